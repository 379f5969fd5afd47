"""The Stripe end-to-end harness: our API over a fresh database, the real `stripe` SDK
pointed at `tests/stripe_standin.py`, signed webhooks, and a marketplace key."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import pytest
from litestar.testing import TestClient
from sqlalchemy import func, select

from ledger import FixedClock, Ledger
from ledger.api.app import create_app
from ledger.api.keys import create_key
from ledger.bootstrap import Services
from ledger.db.schema import entries
from ledger.escrow.service import Escrow
from ledger.gateway.stripe_gateway import StripeGateway
from tests.stripe_standin import StripeStandIn, signed

SECRET = "whsec_test_secret"


@dataclass
class StripeApi:
    client: TestClient  # type: ignore[type-arg]
    book: Ledger
    stripe: StripeStandIn
    clock: FixedClock
    headers: dict[str, str]
    gateway: StripeGateway

    @property
    def escrow(self) -> Escrow:
        """The service layer behind the API, for what runs outside requests (`ledger tick`)."""
        return Escrow(self.book, self.gateway)

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.client.post(path, json=body, headers=self.headers)

    def webhook(self, payload: dict[str, Any], *, secret: str = SECRET, at: int | None = None) -> Any:
        body, signature = signed(payload, secret, at=at)
        return self.client.post(
            "/v1/webhooks/stripe",
            content=body,
            headers={"Stripe-Signature": signature, "Content-Type": "application/json"},
        )

    def milestone(self, milestone_id: str) -> dict[str, Any]:
        return dict(self.client.get(f"/v1/milestones/{milestone_id}", headers=self.headers).json())

    def entry_count(self) -> int:
        return self.book.transaction(
            lambda uow: int(uow.connection.execute(select(func.count()).select_from(entries)).scalar_one())
        )


@pytest.fixture
def stripe_api(book: Ledger, clock: FixedClock) -> Iterator[StripeApi]:
    standin = StripeStandIn(clock=clock.now)  # Stripe's time moves with the test's
    # A short read timeout, so the stand-in's "timeout" fault (a 2 s late answer) times out.
    gateway = StripeGateway("sk_test_standin", api_base=standin.url, max_network_retries=2, timeout=1.0, clock=clock)
    _, key = book.transaction(lambda uow: create_key(uow, "marketplace"))
    app = create_app(Services.over(book, gateway), stripe_webhook_secret=SECRET)
    with TestClient(app) as client:
        api = StripeApi(client, book, standin, clock, {"Authorization": f"Bearer {key}"}, gateway)
        api.client.put(
            "/v1/parties/cl_1", json={"display_name": "Acme", "provider_id": "cus_acme"}, headers=api.headers
        )
        api.client.put("/v1/parties/fr_1", json={"display_name": "Ada", "provider_id": "acct_ada"}, headers=api.headers)
        yield api
    standin.close()


class PostsToTheApi(Protocol):
    def post(self, path: str, body: dict[str, Any] | None = None) -> Any: ...


def new_milestone(api: PostsToTheApi, amount: str = "1000.00") -> str:
    """A contract between cl_1 and fr_1 in USD with one milestone; its id."""
    contract = api.post(
        "/v1/contracts", {"client_id": "cl_1", "freelancer_id": "fr_1", "currency": "USD", "title": "t"}
    )
    assert contract.status_code == 201, contract.text
    milestone = api.post(
        f"/v1/contracts/{contract.json()['id']}/milestones",
        {"title": "m", "amount": {"amount": amount, "currency": "USD"}},
    )
    assert milestone.status_code == 201, milestone.text
    return str(milestone.json()["id"])
