"""localstripe, a stateful fake Stripe written by others, as an independent check of our gateway.

`tests/stripe_standin.py` is our own stand-in: it answers the way we believe Stripe
answers, so a test against it can only confirm our own reading of Stripe. localstripe
(https://github.com/adrienverge/localstripe) was written by other people from their
reading of Stripe's API; it validates request parameters, keeps customers, payment
methods, PaymentIntents, charges and refunds, runs the test cards (declines, 3-D
Secure) and sends signed webhooks. Running the real `stripe` SDK in our gateway
against it checks the requests we make against a second, independent opinion.

What localstripe lacks (Idempotency-Key replay, `created[...]` list filters for
reconciliation, Connect transfers, balance-transaction fees, disputes, injected
faults) stays covered by the stand-in.

- `LocalStripe` starts `localstripe --port N --from-scratch` as a subprocess on a free
  port, waits until it answers and stops it. localstripe writes its store to the
  fixed path /tmp/localstripe.pickle on every write; `--from-scratch` ignores an old
  one at start, and `reset()` empties the store between tests (webhook registrations
  survive it).
- `WebhookRelay` is a small HTTP server on 127.0.0.1 that localstripe delivers
  webhooks to. It records each delivery exactly as received (raw body bytes and the
  `Stripe-Signature` header), so a test can wait for one and post it unchanged to
  our API.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

#: The card numbers localstripe knows (the same as Stripe's test cards).
VISA = "4242424242424242"
DECLINED_AT_CHARGE = "4000000000000341"  # attaches to a customer, declined when charged
NEEDS_3DS = "4000002500003155"  # requires_action until the customer authenticates


def free_port() -> int:
    """A TCP port nobody listens on now (localstripe binds it on all interfaces, IPv4 and IPv6)."""
    family, address = (socket.AF_INET6, "::") if socket.has_ipv6 else (socket.AF_INET, "0.0.0.0")
    try:
        probe = socket.socket(family, socket.SOCK_STREAM)
    except OSError:
        probe, address = socket.socket(socket.AF_INET, socket.SOCK_STREAM), "0.0.0.0"
    with probe:
        probe.bind((address, 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Delivery:
    """One webhook delivery as localstripe sent it."""

    body: bytes
    signature: str | None
    content_type: str | None = None
    received_at: float = field(default_factory=time.monotonic)

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed

    @property
    def event_type(self) -> str:
        return str(self.event.get("type"))

    @property
    def object_id(self) -> str | None:
        obj = (self.event.get("data") or {}).get("object") or {}
        return obj.get("id")


class WebhookRelay:
    """A ThreadingHTTPServer on a free 127.0.0.1 port that records every POST it receives."""

    def __init__(self) -> None:
        self.deliveries: queue.Queue[Delivery] = queue.Queue()
        self._unclaimed: list[Delivery] = []  # received, not yet matched by `wait_for`
        relay = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                relay.deliveries.put(
                    Delivery(body, self.headers.get("stripe-signature"), self.headers.get("content-type"))
                )
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhooks"
        self._thread = threading.Thread(target=self.server.serve_forever, name="webhook-relay", daemon=True)
        self._thread.start()

    def clear(self) -> None:
        """Forget every delivery received so far."""
        self._unclaimed.clear()
        while True:
            try:
                self.deliveries.get_nowait()
            except queue.Empty:
                return

    def wait_for(self, event_type: str, object_id: str, *, timeout: float = 10.0) -> Delivery:
        """The first delivery of `event_type` about `object_id`, waiting up to `timeout` seconds.

        Deliveries about other objects (late ones from an earlier test, say) are kept for
        later calls, not dropped."""

        def matches(delivery: Delivery) -> bool:
            return delivery.event_type == event_type and delivery.object_id == object_id

        for index, delivery in enumerate(self._unclaimed):
            if matches(delivery):
                return self._unclaimed.pop(index)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                delivery = self.deliveries.get(timeout=left)
            except queue.Empty:
                break
            if matches(delivery):
                return delivery
            self._unclaimed.append(delivery)
        seen = [(d.event_type, d.object_id) for d in self._unclaimed]
        raise TimeoutError(f"no {event_type} webhook about {object_id} within {timeout:.0f}s; received {seen}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


class LocalStripe:
    """A `localstripe` subprocess on a free port; `url` is its API base."""

    def __init__(self, log_path: Path, *, executable: Path | None = None) -> None:
        self.executable = executable or Path(sys.executable).parent / "localstripe"
        self.log_path = log_path
        self.port = 0
        self.url = ""
        self._process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def installed() -> bool:
        return (Path(sys.executable).parent / "localstripe").exists()

    def start(self, *, timeout: float = 15.0, attempts: int = 3) -> None:
        """Start it and wait until it answers HTTP (a port taken in between is retried on another)."""
        if not self.executable.exists():
            raise RuntimeError(f"localstripe is not installed next to {sys.executable} ({self.executable})")
        for _ in range(attempts):
            self.port = free_port()
            self.url = f"http://127.0.0.1:{self.port}"
            with self.log_path.open("ab") as log:
                self._process = subprocess.Popen(
                    [str(self.executable), "--port", str(self.port), "--from-scratch"],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )
            if self._wait_until_up(timeout):
                return
            self.stop()
        raise RuntimeError(f"localstripe did not start; its log:\n{self.log_tail()}")

    def _wait_until_up(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                return False  # it exited (the port was taken, say)
            with contextlib.suppress(requests.RequestException):
                requests.get(f"{self.url}/v1/customers", headers={"Authorization": "Bearer sk_test_ping"}, timeout=1)
                return True
            time.sleep(0.1)
        return False

    def log_tail(self, size: int = 4000) -> str:
        try:
            return self.log_path.read_bytes()[-size:].decode(errors="replace")
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def reset(self) -> None:
        """Delete every object (customers, intents, refunds...); webhook registrations stay."""
        requests.delete(f"{self.url}/_config/data", timeout=5).raise_for_status()

    def register_webhook(self, name: str, url: str, secret: str, events: Iterable[str]) -> None:
        """Have localstripe sign `events` with `secret` and POST them to `url`."""
        data = [("url", url), ("secret", secret), *(("events[]", e) for e in events)]
        requests.post(f"{self.url}/_config/webhooks/{name}", data=data, timeout=5).raise_for_status()

    def authenticate(self, intent_id: str, client_secret: str, *, success: bool) -> dict[str, Any]:
        """The customer completes (or fails) 3-D Secure, as Stripe.js would with localstripe."""
        response = requests.post(
            f"{self.url}/v1/payment_intents/{intent_id}/_authenticate",
            data={"client_secret": client_secret, "success": "true" if success else "false", "key": "pk_test_x"},
            timeout=5,
        )
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        return answer


@contextlib.contextmanager
def localstripe_with_relay(
    log_path: Path, secret: str, events: Iterable[str]
) -> Iterator[tuple[LocalStripe, WebhookRelay]]:
    """localstripe running, with a relay registered for `events` under the webhook `secret`; both stopped at the end."""
    relay = WebhookRelay()
    server = LocalStripe(log_path)
    try:
        server.start()
        server.register_webhook("relay", relay.url, secret, events)
        yield server, relay
    finally:
        server.stop()
        relay.close()
