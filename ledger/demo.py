"""`ledger demo`: a small demo marketplace in an empty database.

Clients and freelancers with party records, contracts with milestones in several
states (funded, submitted, released with invoices, paid out, a refund request),
all through the same service layer the API uses, with the simulated gateway.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from ledger.api.keys import create_key
from ledger.db.schema import contracts, entries
from ledger.db.unit_of_work import UnitOfWork
from ledger.errors import Conflict
from ledger.escrow.service import Escrow
from ledger.gateway.simulated import SimulatedGateway
from ledger.invoices.service import Finance
from ledger.service import Ledger


class DatabaseNotEmpty(Conflict):
    """The demo only fills an empty database."""

    code = "database-not-empty"


def is_empty(book: Ledger) -> bool:
    def count(uow: UnitOfWork) -> int:
        return sum(
            int(uow.connection.execute(select(func.count()).select_from(t)).scalar_one()) for t in (entries, contracts)
        )

    return book.transaction(count, read_only=True) == 0


def fill(book: Ledger, gateway: SimulatedGateway | None = None) -> str:
    """Fill an empty database; return a new admin API key.

    `gateway` is the simulated provider the server will use (keeping its books in the
    same database), so that the provider's record of the demo's money is there for the
    audit to compare; without one, the provider's books are kept in memory only."""
    if not is_empty(book):
        raise DatabaseNotEmpty("the database already has data; the demo only fills an empty one")
    escrow = Escrow(book, gateway or SimulatedGateway())
    finance = Finance(book)
    finance.set_party(
        "acme",
        display_name="Acme GmbH",
        legal_name="Acme GmbH",
        address="Hauptstr. 1\n10115 Berlin",
        country="DE",
        tax_id="DE811907980",
    )
    finance.set_party("globex", display_name="Globex Inc.", country="US")
    finance.set_party("ada", display_name="Ada Lovelace", address="12 St James's Square\nLondon", country="GB")
    finance.set_party("linus", display_name="Linus T.", country="FI")

    site = escrow.contracts.open_contract(
        client_id="acme", freelancer_id="ada", currency="USD", title="Company website"
    )
    design = escrow.contracts.add_milestone(site.id, title="Design", amount=1_000_00)
    build = escrow.contracts.add_milestone(site.id, title="Build", amount=2_500_00)
    escrow.contracts.add_milestone(site.id, title="Launch support", amount=600_00)
    escrow.funding.fund(design.id)
    escrow.contracts.submit(design.id)
    escrow.approvals.approve(design.id)  # 1,000.00: fee 150.00, 850.00 pending
    escrow.funding.fund(build.id)
    escrow.contracts.submit(build.id)  # waiting for the client's review

    api = escrow.contracts.open_contract(
        client_id="globex", freelancer_id="linus", currency="EUR", title="API integration"
    )
    first = escrow.contracts.add_milestone(api.id, title="Prototype", amount=400_00)
    second = escrow.contracts.add_milestone(api.id, title="Hardening", amount=800_00)
    escrow.funding.fund(first.id)
    escrow.approvals.approve(first.id)
    escrow.orders.tick(book.clock.now() + timedelta(days=5))  # the security period is over
    escrow.payouts.request_payout("linus", amount=200_00, currency="EUR")
    escrow.funding.fund(second.id)
    escrow.contracts.end_contract(api.id, ended_by="client")  # a refund request, waiting for the freelancer
    _, key = book.transaction(lambda uow: create_key(uow, "admin"))
    return key
