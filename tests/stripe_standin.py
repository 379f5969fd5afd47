"""A small stand-in for the Stripe API, served on a free local port for the real SDK.

It answers what the ledger calls the way Stripe does: form-encoded requests, JSON
objects with Stripe's field names, card errors as 402, unknown ids as 404
`resource_missing`, and Idempotency-Key replay (the same key returns the first
response). It serves:

- PaymentIntents: POST /v1/payment_intents (confirmed at once; `DECLINED` is declined
  with a 402 and left in requires_payment_method, `NEEDS_ACTION` waits for 3-D Secure),
  GET /v1/payment_intents/{id} (with `expand`, a succeeded one carries its charge and the
  charge's balance transaction: a fee of 2.9% + 30 cents), GET /v1/payment_intents,
  POST /v1/payment_intents/{id}/cancel (only from requires_payment_method,
  requires_confirmation, requires_action, requires_capture or processing; otherwise a 400
  `payment_intent_unexpected_state`), GET /v1/payment_intents/search (Stripe's search
  query language: clauses `field:'value'` and `metadata['key']:'value'` joined by AND);
- refunds: POST /v1/refunds, GET /v1/refunds/{id}, GET /v1/refunds;
- Connect transfers: POST /v1/transfers, GET /v1/transfers/{id}, GET /v1/transfers,
  POST and GET /v1/transfers/{id}/reversals (a reversal defaults to what is left);
- disputes (chargebacks and inquiries): GET /v1/disputes/{id}, with the balance
  transactions embedded, and GET /v1/disputes;
- balance transactions (card payments, dispute withdrawals and reinstatements):
  GET /v1/balance_transactions/{id}, GET /v1/balance_transactions;
- customers: GET /v1/customers/{id}, with `invoice_settings.default_payment_method`
  (a test adds them with `add_customer`).

Lists are newest first, filtered by `created[gte|gt|lte|lt]` and paged by `limit`
(default 10) and `starting_after`, with `has_more`. Objects are stamped `created` by the
stand-in's clock (the test's clock when given, so a test moving time moves Stripe's too).
What Stripe does on its own, tests do with Python methods: `complete_action` (3-D Secure,
or the payer finishing with another payment method), `settle_refund`, `reverse_transfer`,
`open_dispute`, `close_dispute`, and `forget_keys` (Stripe keeps an idempotency key for
24 hours). Tests can inject faults on the next POST with `fail_next`: a 500, a response
lost after the object was created, or a response that comes after the client's read
timeout, or (`"lost"`) a request lost on the way, replay or not, that Stripe never sees.
`signed` signs webhook payloads as Stripe does, and `event` wraps an object in an event.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

DECLINED = "pm_card_chargeDeclined"
NEEDS_ACTION = "pm_card_authenticationRequired"
DISPUTE_FEE = 1500  # Stripe's $15 dispute fee, in cents; given back when the dispute is won
#: The URL segment of each retrievable, listable resource and the `object` it holds.
RESOURCES = {
    "payment_intents": "payment_intent",
    "refunds": "refund",
    "transfers": "transfer",
    "disputes": "dispute",
    "balance_transactions": "balance_transaction",
    "customers": "customer",
}
REFUND_STATUSES = ("pending", "requires_action", "succeeded", "failed", "canceled")
#: The PaymentIntent statuses Stripe lets a cancellation act on.
CANCELABLE = ("requires_payment_method", "requires_confirmation", "requires_action", "requires_capture", "processing")
#: One clause of Stripe's search query language: `status:'succeeded'`, `metadata['order']:'ord_1'`.
SEARCH_CLAUSE = re.compile(r"^(?:metadata\['(?P<key>[^']+)'\]|(?P<field>[a-z_]+)):'(?P<value>(?:[^'\\]|\\.)*)'$")
CLOSED_DISPUTES = ("won", "lost", "warning_closed")


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


def _invalid(message: str, *, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """Stripe's error body for a request it refuses."""
    error: dict[str, Any] = {"type": "invalid_request_error", "message": message}
    if code:
        error["code"] = code
    if param:
        error["param"] = param
    return {"error": error}


class StripeStandIn:
    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        self.clock = clock
        self.objects: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, dict[str, Any], str | None]] = []
        self.replays: dict[str, tuple[int, bytes]] = {}
        self.faults: list[str] = []
        self.created: dict[str, int] = defaultdict(int)
        self.last_query = ""
        self.refund_status = "succeeded"  # what a new refund reports; "pending" waits for a webhook
        self.timeout_delay = 2.0  # seconds a "timeout" fault holds the response back
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

    def add_customer(self, customer_id: str, default_payment_method: str | None) -> None:
        """A customer, as the marketplace saved it at Stripe, with its default payment method."""
        self.objects[customer_id] = {
            "id": customer_id,
            "object": "customer",
            "created": self.now(),
            "invoice_settings": {"default_payment_method": default_payment_method},
        }

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def fail_next(self, fault: str) -> None:
        """Break the next POST that is not a replay (faults queue up, one per POST).

        `"500"`: answer it with a server error, creating nothing; `"drop"`: create, then lose
        the response; `"timeout"`: create, then answer only after `timeout_delay` seconds, so a
        client with a shorter read timeout gives up and retries (its retry gets the replay);
        `"lost"`: the next POST, a replay or not, is lost on the way and never reaches Stripe.
        """
        self.faults.append(fault)

    def forget_keys(self) -> None:
        """Stripe forgets idempotency keys 24 hours after first use: the same key creates anew."""
        with self._lock:
            self.replays.clear()

    def now(self) -> int:
        """Stripe's time, as it stamps `created`."""
        return int(self.clock().timestamp()) if self.clock is not None else int(time.time())

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_standin{next(self._ids)}"

    def _serve(self, handler: BaseHTTPRequestHandler, method: str, body: str) -> None:
        params = parse_form(body)
        key = handler.headers.get("Idempotency-Key")
        with self._lock:
            if method == "POST" and self.faults and self.faults[0] == "lost":
                self.faults.pop(0)
                handler.close_connection = True
                handler.connection.close()  # lost on the way: nothing reached Stripe
                return
            path, _, self.last_query = handler.path.partition("?")
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
            if fault != "timeout":
                self._send(handler, status, payload)
                return
        # A "timeout": the object exists and its replay is stored. Wait outside the lock, so the
        # client's retry is answered meanwhile; by the time this answer goes out nobody listens.
        time.sleep(self.timeout_delay)
        self._send(handler, status, payload)

    def _send(self, handler: BaseHTTPRequestHandler, status: int, payload: bytes) -> None:
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(payload)))
            handler.send_header("Request-Id", f"req_{next(self._ids)}")
            handler.end_headers()
            handler.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True  # the client gave up (a read timeout): nobody to answer

    def _route(self, method: str, path: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        parts = path.strip("/").split("/")
        if method == "POST" and path == "/v1/payment_intents":
            return self._create_intent(params)
        if method == "GET" and path == "/v1/payment_intents/search":
            return self._search("payment_intent", parse_form(self.last_query))
        if method == "POST" and len(parts) == 4 and parts[:2] == ["v1", "payment_intents"] and parts[3] == "cancel":
            return self._cancel_intent(parts[2], params)
        if method == "GET" and len(parts) == 3 and parts[0] == "v1" and parts[1] in RESOURCES:
            found = self._find(parts[1], parts[2])
            if found is None:
                return self._missing(parts[1], parts[2])
            if found["object"] != "payment_intent":
                return 200, found
            intent = dict(found)
            if "expand" in self.last_query and intent["status"] == "succeeded":
                intent["latest_charge"] = {
                    "id": f"ch_{intent['id']}",
                    "object": "charge",
                    "balance_transaction": self._charge_transaction(intent),
                }
            return 200, intent
        if method == "GET" and len(parts) == 2 and parts[1] in RESOURCES:
            return self._page(path, RESOURCES[parts[1]], parse_form(self.last_query))
        if method == "POST" and path == "/v1/refunds":
            refund = {
                "id": self.new_id("re"),
                "object": "refund",
                "created": self.now(),
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
                "created": self.now(),
                "amount": int(params["amount"]),
                "amount_reversed": 0,
                "currency": params["currency"],
                "destination": params["destination"],
                "metadata": params.get("metadata", {}),
                "reversed": False,
            }
            transfer["reversals"] = self._list(f"/v1/transfers/{transfer['id']}/reversals", [])
            self.objects[transfer["id"]] = transfer
            self.created["transfer"] += 1
            return 200, transfer
        if len(parts) == 4 and parts[:2] == ["v1", "transfers"] and parts[3] == "reversals":
            target = self._find("transfers", parts[2])
            if target is None:
                return self._missing("transfers", parts[2])
            if method == "GET":
                return 200, self._list(path, list(target["reversals"]["data"]))
            amount = int(params["amount"]) if params.get("amount") else None
            return self._reverse(target, amount, params.get("metadata", {}))
        return 404, {"error": {"type": "invalid_request_error", "message": f"no route {method} {path}"}}

    def _find(self, resource: str, object_id: str) -> dict[str, Any] | None:
        """The stored object with this id, if it is of the resource's kind."""
        found = self.objects.get(object_id)
        return found if found is not None and found["object"] == RESOURCES[resource] else None

    @staticmethod
    def _missing(resource: str, object_id: str) -> tuple[int, dict[str, Any]]:
        message = f"No such {RESOURCES[resource]}: '{object_id}'"
        return 404, _invalid(message, param="id", code="resource_missing")

    @staticmethod
    def _list(url: str, data: list[dict[str, Any]]) -> dict[str, Any]:
        return {"object": "list", "url": url, "has_more": False, "total_count": len(data), "data": data}

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
            "created": self.now(),
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
        if intent["status"] == "succeeded":
            self._charge_transaction(intent)
        return 200, intent

    def _page(self, url: str, kind: str, query: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """A list, as Stripe pages it: newest first, after `starting_after`, `limit` at a time."""
        created = query.get("created")
        if created is not None and not isinstance(created, dict):
            created = {"eq": created}
        bounds = {op: int(v) for op, v in (created or {}).items()}
        tests = {
            "eq": lambda c, v: c == v,
            "gte": lambda c, v: c >= v,
            "gt": lambda c, v: c > v,
            "lte": lambda c, v: c <= v,
            "lt": lambda c, v: c < v,
        }
        if any(op not in tests for op in bounds):
            return 400, _invalid(f"Invalid created filter: {sorted(bounds)}", param="created")
        newest_first = [o for o in reversed(list(self.objects.values())) if o["object"] == kind]
        data = [o for o in newest_first if all(tests[op](int(o.get("created") or 0), v) for op, v in bounds.items())]
        after = query.get("starting_after")
        if after:
            ids = [o["id"] for o in data]
            if after not in ids:
                return 400, _invalid(f"No such {kind}: '{after}'", param="starting_after", code="resource_missing")
            data = data[ids.index(after) + 1 :]
        limit = int(query.get("limit") or 10)
        if not 1 <= limit <= 100:
            return 400, _invalid("limit must be between 1 and 100", param="limit")
        page = self._list(url, data[:limit])
        page["has_more"] = len(data) > limit
        del page["total_count"]
        return 200, page

    def _search(self, kind: str, query: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Stripe's Search API over one kind: every clause must hold (AND), exact matches only."""
        text = str(query.get("query") or "").strip()
        clauses = [c.strip() for c in re.split(r"\s+AND\s+", text)] if text else []
        matchers = [SEARCH_CLAUSE.match(c) for c in clauses]
        if not clauses or not all(matchers):
            return 400, _invalid(f"Invalid search query: {text!r}", param="query", code="parameter_invalid_string")

        def holds(obj: dict[str, Any]) -> bool:
            for found in matchers:
                assert found is not None
                value = re.sub(r"\\(.)", r"\1", found["value"])
                have = (obj.get("metadata") or {}).get(found["key"]) if found["key"] else obj.get(found["field"])
                if str(have) != value:
                    return False
            return True

        data = [o for o in reversed(list(self.objects.values())) if o["object"] == kind and holds(o)]
        limit = int(query.get("limit") or 10)
        url = "/v1/payment_intents/search"
        result = {"object": "search_result", "url": url, "has_more": len(data) > limit, "data": data[:limit]}
        result["next_page"] = None  # one page is all a test needs; Stripe pages with `page`
        return 200, result

    def _cancel_intent(self, intent_id: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        intent = self._find("payment_intents", intent_id)
        if intent is None:
            return self._missing("payment_intents", intent_id)
        if intent["status"] not in CANCELABLE:
            message = (
                f"You cannot cancel this PaymentIntent because it has a status of {intent['status']}. "
                f"Only a PaymentIntent with one of the following statuses may be canceled: {', '.join(CANCELABLE)}."
            )
            body = _invalid(message, code="payment_intent_unexpected_state")
            body["error"]["payment_intent"] = dict(intent)
            return 400, body
        intent["status"] = "canceled"
        intent["canceled_at"] = self.now()
        intent["cancellation_reason"] = params.get("cancellation_reason")
        self.created["payment_intent_cancellation"] += 1
        return 200, intent

    def _transaction(
        self, amount: int, fee: int, currency: str, kind: str, category: str, source: str, txn_id: str | None = None
    ) -> dict[str, Any]:
        """Store and return a balance transaction: money in (amount > 0) or out, less Stripe's fee."""
        transaction: dict[str, Any] = {
            "id": txn_id or self.new_id("txn"),
            "object": "balance_transaction",
            "amount": amount,
            "fee": fee,
            "net": amount - fee,
            "currency": currency,
            "type": kind,
            "reporting_category": category,
            "source": source,
            "created": self.now(),
        }
        self.objects[transaction["id"]] = transaction
        self.created["balance_transaction"] += 1
        return transaction

    def _charge_transaction(self, intent: dict[str, Any]) -> dict[str, Any]:
        """The balance transaction of a succeeded payment's charge (made once, on first need)."""
        existing = self.objects.get(f"txn_{intent['id']}")
        if existing is not None:
            return existing
        fee = intent["amount"] * 29 // 1000 + 30  # 2.9% + 30 cents, like a card payment
        return self._transaction(
            intent["amount"], fee, intent["currency"], "charge", "charge", f"ch_{intent['id']}", f"txn_{intent['id']}"
        )

    def _reverse(
        self, transfer: dict[str, Any], amount: int | None, metadata: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        """Reverse part or (by default) all of what is left of a transfer; the reversal, or a 400."""
        left = transfer["amount"] - transfer.get("amount_reversed", 0)
        if left <= 0:
            return 400, _invalid(f"Transfer {transfer['id']} has already been fully reversed.")
        amount = left if amount is None else amount
        if not 0 < amount <= left:
            message = f"You cannot reverse {amount}: only {left} of transfer {transfer['id']} is left to reverse."
            return 400, _invalid(message, param="amount")
        reversal = {
            "id": self.new_id("trr"),
            "object": "transfer_reversal",
            "amount": amount,
            "currency": transfer["currency"],
            "transfer": transfer["id"],
            "created": self.now(),
            "metadata": metadata,
        }
        self.objects[reversal["id"]] = reversal
        self.created["transfer_reversal"] += 1
        transfer["amount_reversed"] = transfer.get("amount_reversed", 0) + amount
        transfer["reversed"] = transfer["amount_reversed"] >= transfer["amount"]
        reversals = transfer.setdefault("reversals", self._list(f"/v1/transfers/{transfer['id']}/reversals", []))
        reversals["data"].insert(0, reversal)  # newest first, as Stripe lists them
        reversals["total_count"] = len(reversals["data"])
        return 200, reversal

    def complete_action(self, intent_id: str, *, succeed: bool = True) -> dict[str, Any]:
        """The customer finished (or failed) 3-D Secure, or, after a failed attempt, confirmed
        the PaymentIntent with another payment method. ValueError if it was cancelled (Stripe
        refuses to confirm it)."""
        with self._lock:
            intent = self.objects[intent_id]
            if intent["status"] == "canceled":
                raise ValueError(f"PaymentIntent {intent_id} is canceled: it cannot be confirmed")
            intent["status"] = "succeeded" if succeed else "requires_payment_method"
            if succeed:
                self._charge_transaction(intent)
            else:
                intent["last_payment_error"] = {"code": "authentication_failed", "message": "Authentication failed."}
            return intent

    def reverse_transfer(self, transfer_id: str, *, amount: int | None = None) -> dict[str, Any]:
        """Stripe (or the platform in the dashboard) reverses a transfer: all that is left unless `amount`.

        Returns the updated transfer; ValueError if there is not that much left to reverse.
        """
        with self._lock:
            transfer = self.objects[transfer_id]
            status, answer = self._reverse(transfer, amount, {})
            if status != 200:
                raise ValueError(answer["error"]["message"])
            return transfer

    def settle_refund(
        self, refund_id: str, status: str = "succeeded", failure_reason: str | None = None
    ) -> dict[str, Any]:
        """A pending refund settles: `status` becomes what Stripe reports; a failed one says why."""
        if status not in REFUND_STATUSES:
            raise ValueError(f"a refund's status is one of {REFUND_STATUSES}, not {status!r}")
        with self._lock:
            refund = self.objects[refund_id]
            refund["status"] = status
            if status == "failed":
                refund["failure_reason"] = failure_reason or "unknown"
            else:
                refund.pop("failure_reason", None)
            return refund

    def open_dispute(self, intent_id: str, amount: int | None = None, *, inquiry: bool = False) -> dict[str, Any]:
        """The cardholder disputes a payment (by default all of it).

        A chargeback withdraws the amount at once, plus the $15 dispute fee, in one balance
        transaction; an inquiry (`inquiry=True`) moves no money.
        """
        with self._lock:
            intent = self.objects[intent_id]
            amount = intent["amount"] if amount is None else amount
            dispute: dict[str, Any] = {
                "id": self.new_id("dp"),
                "object": "dispute",
                "amount": amount,
                "currency": intent["currency"],
                "charge": f"ch_{intent_id}",
                "payment_intent": intent_id,
                "status": "warning_needs_response" if inquiry else "needs_response",
                "reason": "fraudulent",
                "created": self.now(),
                "metadata": {},
                "balance_transactions": [],
            }
            if not inquiry:
                withdrawal = self._transaction(
                    -amount, DISPUTE_FEE, dispute["currency"], "adjustment", "dispute", dispute["id"]
                )
                dispute["balance_transactions"].append(withdrawal)
            self.objects[dispute["id"]] = dispute
            self.created["dispute"] += 1
            return dispute

    def close_dispute(self, dispute_id: str, *, won: bool) -> dict[str, Any]:
        """The card network decides. A won chargeback gives the amount and the fee back.

        Won: "won" (an inquiry: "warning_closed", nothing to give back); lost: "lost".
        ValueError if the dispute is already closed.
        """
        with self._lock:
            dispute = self.objects[dispute_id]
            if dispute["status"] in CLOSED_DISPUTES:
                raise ValueError(f"dispute {dispute_id} is already closed ({dispute['status']})")
            inquiry = str(dispute["status"]).startswith("warning_")
            if not won:
                dispute["status"] = "lost"
            elif inquiry:
                dispute["status"] = "warning_closed"
            else:
                dispute["status"] = "won"
                reinstatement = self._transaction(
                    dispute["amount"], -DISPUTE_FEE, dispute["currency"], "adjustment", "dispute_reversal", dispute_id
                )
                dispute["balance_transactions"].append(reinstatement)
            return dispute


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
