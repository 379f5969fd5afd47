"""A small stand-in for the Stripe API, served on a free local port for the real SDK.

It implements what the ledger calls (PaymentIntents, refunds, Connect transfers)
the way Stripe answers: form-encoded requests, JSON objects, card errors as 402,
and Idempotency-Key replay (the same key returns the first response). Tests can
inject faults: a 500, or a response lost after the object was created. It signs
webhook payloads as Stripe does.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

DECLINED = "pm_card_chargeDeclined"
NEEDS_ACTION = "pm_card_authenticationRequired"


def parse_form(body: str) -> dict[str, Any]:
    """Stripe's form encoding: `metadata[milestone]=ms_1` -> {"metadata": {"milestone": "ms_1"}}."""
    result: dict[str, Any] = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        if "[" in key:
            outer, inner = key.split("[", 1)
            result.setdefault(outer, {})[inner.rstrip("]")] = value
        else:
            result[key] = value
    return result


class StripeStandIn:
    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, dict[str, Any], str | None]] = []
        self.replays: dict[str, tuple[int, bytes]] = {}
        self.faults: list[str] = []
        self.created: dict[str, int] = defaultdict(int)
        self.last_query = ""
        self.refund_status = "succeeded"  # what a new refund reports; "pending" waits for a webhook
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                standin._serve(self, "GET", "")

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                standin._serve(self, "POST", self.rfile.read(length).decode())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def fail_next(self, fault: str) -> None:
        """`"500"`: answer the next create with a server error; `"drop"`: create, then lose the response."""
        self.faults.append(fault)

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_standin{next(self._ids)}"

    def _serve(self, handler: BaseHTTPRequestHandler, method: str, body: str) -> None:
        params = parse_form(body)
        key = handler.headers.get("Idempotency-Key")
        path, _, self.last_query = handler.path.partition("?")
        with self._lock:
            self.requests.append((method, path, params, key))
            if method == "POST" and key and key in self.replays:
                status, payload = self.replays[key]
                self._send(handler, status, payload)
                return
            fault = self.faults.pop(0) if (method == "POST" and self.faults) else None
            if fault == "500":
                self._send(handler, 500, json.dumps({"error": {"type": "api_error", "message": "injected"}}).encode())
                return
            status, obj = self._route(method, path, params)
            payload = json.dumps(obj).encode()
            if method == "POST" and key and status < 500:
                self.replays[key] = (status, payload)
            if fault == "drop":
                handler.close_connection = True
                handler.connection.close()  # the object exists, the client never hears of it
                return
            self._send(handler, status, payload)

    def _send(self, handler: BaseHTTPRequestHandler, status: int, payload: bytes) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.send_header("Request-Id", f"req_{next(self._ids)}")
        handler.end_headers()
        handler.wfile.write(payload)

    def _route(self, method: str, path: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        parts = path.strip("/").split("/")
        if method == "POST" and path == "/v1/payment_intents":
            return self._create_intent(params)
        if method == "GET" and parts[:2] == ["v1", "payment_intents"] and len(parts) == 3 and parts[2] in self.objects:
            intent = dict(self.objects[parts[2]])
            if "expand" in self.last_query and intent["status"] == "succeeded":
                fee = intent["amount"] * 29 // 1000 + 30  # 2.9% + 30 cents, like a card payment
                intent["latest_charge"] = {
                    "id": f"ch_{intent['id']}",
                    "balance_transaction": {"id": f"txn_{intent['id']}", "fee": fee, "currency": intent["currency"]},
                }
            return 200, intent
        listings = {"payment_intents": "payment_intent", "refunds": "refund", "transfers": "transfer"}
        if method == "GET" and len(parts) == 2 and parts[1] in listings:
            kind = listings[parts[1]]
            data = [o for o in self.objects.values() if o["object"] == kind]
            return 200, {"object": "list", "url": path, "has_more": False, "data": data}
        if method == "POST" and path == "/v1/refunds":
            refund = {
                "id": self.new_id("re"),
                "object": "refund",
                "created": int(time.time()),
                "status": self.refund_status,
                "amount": int(params["amount"]),
                "currency": self.objects.get(params.get("payment_intent") or "", {}).get("currency", "usd"),
                "payment_intent": params.get("payment_intent"),
                "metadata": params.get("metadata", {}),
            }
            self.objects[refund["id"]] = refund
            self.created["refund"] += 1
            return 200, refund
        if method == "POST" and path == "/v1/transfers":
            transfer = {
                "id": self.new_id("tr"),
                "object": "transfer",
                "created": int(time.time()),
                "amount": int(params["amount"]),
                "currency": params["currency"],
                "destination": params["destination"],
                "metadata": params.get("metadata", {}),
                "reversed": False,
            }
            self.objects[transfer["id"]] = transfer
            self.created["transfer"] += 1
            return 200, transfer
        return 404, {"error": {"type": "invalid_request_error", "message": f"no route {method} {path}"}}

    def _create_intent(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        intent: dict[str, Any] = {
            "id": self.new_id("pi"),
            "object": "payment_intent",
            "amount": int(params["amount"]),
            "currency": params["currency"],
            "customer": params.get("customer"),
            "metadata": params.get("metadata", {}),
            "transfer_group": params.get("transfer_group"),
            "capture_method": params.get("capture_method"),
            "status": "requires_payment_method",
            "created": int(time.time()),
            "client_secret": None,
            "last_payment_error": None,
        }
        intent["client_secret"] = f"{intent['id']}_secret"
        self.objects[intent["id"]] = intent
        self.created["payment_intent"] += 1
        method = params.get("payment_method")
        if method == DECLINED:
            intent["last_payment_error"] = {"code": "card_declined", "message": "Your card was declined."}
            error = {
                "type": "card_error",
                "code": "card_declined",
                "message": "Your card was declined.",
                "payment_intent": intent,
            }
            return 402, {"error": error}
        intent["status"] = "requires_action" if method == NEEDS_ACTION else "succeeded"
        return 200, intent

    def complete_action(self, intent_id: str, *, succeed: bool = True) -> dict[str, Any]:
        """The customer finished (or failed) 3-D Secure."""
        intent = self.objects[intent_id]
        intent["status"] = "succeeded" if succeed else "requires_payment_method"
        if not succeed:
            intent["last_payment_error"] = {"code": "authentication_failed", "message": "Authentication failed."}
        return intent


def signed(payload: dict[str, Any], secret: str, *, at: int | None = None) -> tuple[bytes, str]:
    """A webhook body and its Stripe-Signature header, as Stripe computes them."""
    body = json.dumps(payload).encode()
    timestamp = int(time.time()) if at is None else at
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return body, f"t={timestamp},v1={digest}"


def event(event_type: str, obj: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
    return {
        "id": event_id or f"evt_{obj['id']}_{event_type}",
        "object": "event",
        "type": event_type,
        "api_version": "2024-06-20",
        "created": int(time.time()),
        "data": {"object": obj},
    }
