"""The composition root: settings are read once, here, and the database, the payment
gateway and the services are built from them for every entry point (the API app, the
CLI, the worker and the demo). Nothing else reads the environment or picks an adapter.

    services = build_services()           # from the environment (LEDGER_*)
    services = build_services(settings)   # from given settings
    services = Services.over(book, gateway)  # tests: an open ledger and a chosen gateway
    book = connect("sqlite:///ledger.sqlite3")  # the ledger alone, for other marketplace modules
"""

from __future__ import annotations

from dataclasses import dataclass

from ledger.audit import CORE_CHECKS, Check
from ledger.clock import Clock
from ledger.config import Settings, load_settings
from ledger.db.engine import require_migrated, upgrade
from ledger.db.provider_books import DatabaseBooks
from ledger.db.unit_of_work import Database
from ledger.escrow.checks import ESCROW_CHECKS
from ledger.escrow.provider_checks import provider_checks
from ledger.escrow.service import Escrow
from ledger.fees.checks import FEE_CHECKS
from ledger.gateway import GatewayNotConfigured, PaymentGateway
from ledger.gateway.books import ProviderBooks, provider_books_of
from ledger.gateway.simulated import SimulatedGateway
from ledger.gateway.stripe_gateway import StripeGateway
from ledger.invoices.checks import INVOICE_CHECKS
from ledger.invoices.documents import PlatformDetails
from ledger.invoices.service import Finance
from ledger.service import Ledger


@dataclass(frozen=True)
class Services:
    """The service layer the entry points call, over one database and one gateway.

    Attributes:
        book: the ledger (core use cases, transactions, the audit).
        gateway: the payment provider; None when none is configured (money-in is refused).
        escrow: the escrow services.
        finance: parties, documents, statements and reports.
        settings: what they were built from.
    """

    book: Ledger
    gateway: PaymentGateway | None
    escrow: Escrow
    finance: Finance
    settings: Settings

    @classmethod
    def over(cls, book: Ledger, gateway: PaymentGateway | None, settings: Settings | None = None) -> Services:
        """The services over an open ledger and a chosen gateway."""
        return cls(
            book=book,
            gateway=gateway,
            escrow=Escrow(book, gateway),
            finance=Finance(book),
            settings=settings or Settings(database_url=""),
        )

    @property
    def provider_books(self) -> ProviderBooks | None:
        """The provider's own books, when the gateway keeps them (the simulated one), for the audit."""
        return provider_books_of(self.gateway)

    def close(self) -> None:
        if isinstance(self.gateway, SimulatedGateway):
            self.gateway.close()
        self.book.close()


def marketplace_checks(provider: ProviderBooks | None) -> list[tuple[str, Check]]:
    """Every invariant the audit checks: the core's, the fee engine's, escrow's, the
    documents', and, given the provider's own books, that its account matches them."""
    return CORE_CHECKS + FEE_CHECKS + ESCROW_CHECKS + INVOICE_CHECKS + provider_checks(provider)


def connect(
    url: str,
    *,
    clock: Clock | None = None,
    migrate: bool = False,
    platform: PlatformDetails | None = None,
) -> Ledger:
    """The ledger on the database at `url`, auditing the whole marketplace. Refuses an
    unmigrated database unless `migrate` is set, in which case it migrates it first.
    `platform` is printed on the invoices the ledger issues."""
    database = Database(url, clock=clock, platform=platform)
    try:
        if migrate:
            upgrade(database.engine)
        require_migrated(database.engine)
    except Exception:
        database.dispose()
        raise
    return Ledger(database, checks=marketplace_checks)


def gateway_from_settings(settings: Settings) -> PaymentGateway | None:
    """The gateway LEDGER_GATEWAY names; None when unset (money-in is then refused)."""
    name = settings.gateway
    if not name:
        return None
    if name == "simulated":
        return SimulatedGateway(DatabaseBooks(settings.database_url))
    if name == "stripe":
        return StripeGateway(settings.stripe_api_key or "", api_base=settings.stripe_api_base)
    raise GatewayNotConfigured(f"LEDGER_GATEWAY={name!r} is not a gateway (use simulated or stripe)")


def build_services(settings: Settings | None = None, *, clock: Clock | None = None) -> Services:
    """Everything an entry point needs, from `settings` (default: the environment)."""
    settings = settings or load_settings()
    book = connect(settings.database_url, clock=clock, platform=settings.platform)
    try:
        gateway = gateway_from_settings(settings)
    except Exception:
        book.close()
        raise
    return Services.over(book, gateway, settings)
