"""`ledger demo`: a small demo marketplace in an empty database.

Clients and freelancers with party records, contracts with milestones in several
states (funded, submitted, released with invoices, paid out, a refund request),
all through the same service layer the API uses, with the simulated gateway.
"""

from __future__ import annotations

from datetime import timedelta

from ledger.api.keys import create_key
from ledger.bootstrap import Services
from ledger.clock import FixedClock
from ledger.errors import Conflict
from ledger.service import Ledger

#: How long before now `ledger demo`'s story starts (its clock then moves on with it).
DEMO_DAYS = 6
SECURITY_PERIOD = timedelta(days=5)


class DatabaseNotEmpty(Conflict):
    """The demo only fills an empty database."""

    code = "database-not-empty"


def is_empty(book: Ledger) -> bool:
    return book.transaction(lambda uow: uow.reports.is_empty(), read_only=True)


def fill(services: Services) -> str:
    """Fill an empty database; return a new admin API key.

    The services' gateway should be the simulated provider the server will use (keeping
    its books in the same database), so that the provider's record of the demo's money is
    there for the audit to compare."""
    book = services.book
    if not is_empty(book):
        raise DatabaseNotEmpty("the database already has data; the demo only fills an empty one")
    escrow = services.escrow
    finance = services.finance
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
    # Five days on, the security period is over and linus withdraws. On a FixedClock
    # (`ledger demo`'s, started DEMO_DAYS ago) time itself moves, so the payout is
    # booked after the money became available; on another clock only the timers run ahead.
    later = book.clock.now() + SECURITY_PERIOD
    if isinstance(book.clock, FixedClock):
        book.clock.set(later)
    escrow.orders.tick(later)
    escrow.payouts.request_payout("linus", amount=200_00, currency="EUR")
    escrow.funding.fund(second.id)
    escrow.contracts.end_contract(api.id, ended_by="client")  # a refund request, waiting for the freelancer
    _, key = book.transaction(lambda uow: create_key(uow, "admin"))
    return key
