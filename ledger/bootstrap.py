"""The composition root: settings are read once here, and the database, the payment
gateway and the services are built from them for every entry point (the API app,
the CLI, the worker and the demo). Nothing below this module reads the environment.
"""

from __future__ import annotations

from ledger.config import Settings
from ledger.gateway import GatewayNotConfigured, PaymentGateway
from ledger.gateway.books import ProviderBooks
from ledger.gateway.simulated import SimulatedGateway
from ledger.gateway.stripe_gateway import StripeGateway


def gateway_from_settings(settings: Settings) -> PaymentGateway | None:
    """The gateway LEDGER_GATEWAY names; None when unset (money-in is then refused)."""
    name = settings.gateway
    if not name:
        return None
    if name == "simulated":
        return SimulatedGateway(settings.database_url)
    if name == "stripe":
        return StripeGateway(settings.stripe_api_key or "", api_base=settings.stripe_api_base)
    raise GatewayNotConfigured(f"LEDGER_GATEWAY={name!r} is not a gateway (use simulated or stripe)")


def provider_books_from_settings(settings: Settings) -> ProviderBooks | None:
    """The books of the provider LEDGER_GATEWAY names, for the audit; None when it keeps
    none the ledger can read (Stripe is reconciled over a period instead, or no gateway)."""
    if settings.gateway == "simulated":
        return SimulatedGateway(settings.database_url)
    return None
