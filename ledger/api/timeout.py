"""The request timeout: a request not answered within `LEDGER_REQUEST_TIMEOUT_SECONDS`
gets a 503 problem (`request-timed-out`) instead of keeping its client waiting.

What it can and cannot stop. Handlers are synchronous and Litestar runs them in a
worker thread (on asyncio, `loop.run_in_executor`). At the deadline the middleware
cancels the request's task: the await on the thread ends and the client is answered
at once, but a thread cannot be killed, so the handler runs on to its end in the
background and keeps its worker thread (and database connection) meanwhile. Its
transactions commit or roll back as they would have; under `@idempotent`
(`ledger.api.idempotent`) it still records its response when it finishes, so a retry with the same Idempotency-Key gets
that response, or 409 `request-in-progress` while it runs, until the claim's lease
(the timeout plus a margin) runs out and a retry may take the key over. The timeout
therefore bounds how long a client waits, not how long work runs. A response already
started is never cut off: the deadline is lifted when its first message is sent. On
Trio, Litestar's thread call ignores cancellation, so the 503 comes only when the
handler returns.
"""

from __future__ import annotations

import math

import anyio
import msgspec
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from ledger.api.problems import PROBLEM_JSON, problem_body
from ledger.errors import RequestTimedOut


class RequestTimeout(ASGIMiddleware):
    """Answer 503 when a request is not answered within `seconds`."""

    scopes = (ScopeType.HTTP,)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        started = False

        with anyio.CancelScope(deadline=anyio.current_time() + self.seconds) as deadline:

            async def send_once_started(message: Message) -> None:
                nonlocal started
                if message["type"] == "http.response.start":
                    started = True
                    deadline.deadline = math.inf
                await send(message)

            await next_app(scope, receive, send_once_started)
        if deadline.cancelled_caught and not started:
            error = RequestTimedOut(
                f"the request was not answered within {self.seconds:g} s; retry it with the same Idempotency-Key"
            )
            content = msgspec.json.encode(problem_body(error, scope["path"]))
            headers = [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(content)).encode())]
            await send({"type": "http.response.start", "status": 503, "headers": headers})
            await send({"type": "http.response.body", "body": content, "more_body": False})
