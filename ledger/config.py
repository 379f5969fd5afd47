"""The one place that reads the environment.

`LEDGER_DATABASE_URL`: SQLAlchemy URL of the database (default: `ledger.sqlite3` in
the working directory, so `ledger` runs with no setup). PostgreSQL URLs may be given
as `postgresql://...`; the psycopg 3 driver is implied.
`LEDGER_GATEWAY`: the payment gateway (`simulated`); no default, so that money is
never taken in without a deliberate choice.
`LEDGER_PLATFORM_NAME`, `LEDGER_PLATFORM_LEGAL_NAME`, `LEDGER_PLATFORM_ADDRESS`
(lines separated by `|`), `LEDGER_PLATFORM_COUNTRY`, `LEDGER_PLATFORM_TAX_ID`: the
platform's own details, printed on the invoices it issues.
`STRIPE_API_KEY`, `STRIPE_WEBHOOK_SECRET`, `STRIPE_API_BASE` (tests only): Stripe.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_SQLITE_FILE = "ledger.sqlite3"


@dataclass(frozen=True)
class PlatformDetails:
    """The marketplace operator, as printed on invoices."""

    display_name: str = "Marketplace"
    legal_name: str | None = None
    address: str | None = None
    country: str | None = None
    tax_id: str | None = None


@dataclass(frozen=True)
class Settings:
    """Settings read from the environment.

    Attributes:
        database_url: SQLAlchemy URL of the ledger database.
        gateway: LEDGER_GATEWAY, or None when unset.
        stripe_api_key, stripe_webhook_secret: STRIPE_API_KEY, STRIPE_WEBHOOK_SECRET.
        stripe_api_base: STRIPE_API_BASE, to point the SDK at a local stand-in (tests).
        platform: the platform's name and legal details for invoices.
    """

    database_url: str
    gateway: str | None = None
    platform: PlatformDetails = PlatformDetails()
    stripe_api_key: str | None = None
    stripe_webhook_secret: str | None = None
    stripe_api_base: str | None = None


def normalize_database_url(url: str) -> str:
    """Make plain `postgresql://` URLs use psycopg 3, the driver the ledger is built on."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    url = env.get("LEDGER_DATABASE_URL") or f"sqlite:///{Path.cwd() / DEFAULT_SQLITE_FILE}"
    address = env.get("LEDGER_PLATFORM_ADDRESS")
    platform = PlatformDetails(
        display_name=env.get("LEDGER_PLATFORM_NAME") or PlatformDetails.display_name,
        legal_name=env.get("LEDGER_PLATFORM_LEGAL_NAME") or None,
        address=address.replace("|", "\n") if address else None,
        country=env.get("LEDGER_PLATFORM_COUNTRY") or None,
        tax_id=env.get("LEDGER_PLATFORM_TAX_ID") or None,
    )
    return Settings(
        database_url=normalize_database_url(url),
        gateway=env.get("LEDGER_GATEWAY") or None,
        platform=platform,
        stripe_api_key=env.get("STRIPE_API_KEY") or None,
        stripe_webhook_secret=env.get("STRIPE_WEBHOOK_SECRET") or None,
        stripe_api_base=env.get("STRIPE_API_BASE") or None,
    )
