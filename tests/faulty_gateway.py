"""`FaultyGateway`: a simulated provider with scripted faults, for tests of what the
ledger does when the network between it and the provider fails.

Faults are scripted per method, in call order (`script("charge", BEFORE, None, AFTER)`:
the first charge fails before reaching the provider, the second goes through, the
third is done by the provider and its answer lost):

- `BEFORE`: raise `GatewayUnavailable` before the call: nothing happens at the provider;
- `AFTER`: make the call, then raise `GatewayUnavailable`: the provider did it, the
  answer is lost;
- `TIMEOUT`: like AFTER, and the next call with the same key succeeds (it gets the
  provider's first answer, from its idempotency memory);
- `TWICE`: send the same call twice (a duplicate delivery) and answer the second.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from ledger.gateway import GatewayResult, GatewayUnavailable
from ledger.gateway.simulated import SimulatedGateway

BEFORE, AFTER, TIMEOUT, TWICE = "before", "after", "timeout", "twice"


class FaultyGateway:
    """Wraps a SimulatedGateway; every other attribute is the wrapped gateway's."""

    def __init__(self, inner: SimulatedGateway) -> None:
        self.inner = inner
        self.psp_account = inner.psp_account
        self._faults: dict[str, list[str | None]] = defaultdict(list)
        self.sent: list[tuple[str, str]] = []  # (method, idempotency key) of calls that reached the provider

    def script(self, method: str, *faults: str | None) -> None:
        self._faults[method].extend(faults)

    def _call(self, method: str, request: dict[str, Any]) -> GatewayResult:
        fault = self._faults[method].pop(0) if self._faults[method] else None
        if fault == BEFORE:
            raise GatewayUnavailable(f"the provider could not be reached ({method})")
        send = getattr(self.inner, method)
        key = str(request.get("idempotency_key"))
        self.sent.append((method, key))
        result: GatewayResult = send(**request)
        if fault == TWICE:
            self.sent.append((method, key))
            result = send(**request)
        if fault in (AFTER, TIMEOUT):
            raise GatewayUnavailable(f"the provider's answer was lost ({method})")
        return result

    def charge(self, **request: Any) -> GatewayResult:
        return self._call("charge", request)

    def refund(self, **request: Any) -> GatewayResult:
        return self._call("refund", request)

    def payout(self, **request: Any) -> GatewayResult:
        return self._call("payout", request)

    def cancel_charge(self, **request: Any) -> GatewayResult:
        return self._call("cancel_charge", request)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
