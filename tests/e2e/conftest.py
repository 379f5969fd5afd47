"""An API client over a fresh database of each kind, with a key per role."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from litestar.testing import TestClient

from ledger import FixedClock, Ledger
from ledger.api.app import create_app
from ledger.api.keys import ROLES, create_key
from ledger.bootstrap import Services
from ledger.gateway.simulated import SimulatedGateway


@dataclass
class Api:
    """A test client, the ledger behind it, its gateway and clock, and a key per role."""

    client: TestClient  # type: ignore[type-arg]
    book: Ledger
    gateway: SimulatedGateway
    clock: FixedClock
    keys: dict[str, str]

    def headers(self, role: str = "marketplace", **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}", **extra}


@pytest.fixture
def api(book: Ledger, clock: FixedClock) -> Iterator[Api]:
    gateway = SimulatedGateway()
    keys = {role: book.transaction(lambda uow, r=role: create_key(uow, r))[1] for role in ROLES}  # type: ignore[misc]
    with TestClient(create_app(Services.over(book, gateway))) as client:
        yield Api(client, book, gateway, clock, keys)


# The Stripe harness's fixture, shared by the Stripe end-to-end modules.
from tests.e2e.stripe_api import stripe_api  # noqa: E402, F401
