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
`LEDGER_REQUEST_TIMEOUT_SECONDS`: how long the API works on a request before it
answers 503 (default 30).
`LEDGER_IDEMPOTENCY_RETENTION`: how long a finished Idempotency-Key is kept, as a
duration (`7d`, `24h`, `90m`, `3600s`; default 7 days); `ledger idempotency prune`
removes older ones.
`LEDGER_IDEMPOTENCY_LEASE_MARGIN`: how long, beyond the request timeout, a claim
left in progress holds its Idempotency-Key before a retry may take it over, as a
duration (default `30s`; shorter only where requests are known to finish quickly,
such as tests).
`LEDGER_LOG_FORMAT`: `json` (the default: one JSON object per line, for a log
collector) or `text` (plain lines, for development); `ledger.observability`.
`LEDGER_AUDIT_INTERVAL`: how often `ledger worker` runs the audit and stores its
result for `/metrics`, as a duration (default `1h`); `0` or `off` turns it off.
`PROMETHEUS_MULTIPROC_DIR`: prometheus_client's multiprocess directory. `ledger serve
--workers N` (N > 1) sets it for its server processes (`ledger.observability`), so
that each answers `/metrics` with the sum over all of them; an operator may set it
instead: it is used as it is (made if missing), so empty it before the server starts,
as prometheus_client asks, or the counts of an earlier run are added in.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from ledger.errors import ConfigurationError
from ledger.invoices.documents import PlatformDetails

DEFAULT_SQLITE_FILE = "ledger.sqlite3"
DEFAULT_REQUEST_TIMEOUT_SECONDS = 30.0
#: Stripe keeps keys 24 hours; a week also covers a client that retries after a weekend.
DEFAULT_IDEMPOTENCY_RETENTION = timedelta(days=7)
#: Beyond the request timeout: the time a request past its timeout still has to record
#: its response (and clock skew between servers) before a retry may take its key over.
DEFAULT_IDEMPOTENCY_LEASE_MARGIN = timedelta(seconds=30)
#: How the logs are written: one JSON object per line, or plain text for development.
LOG_FORMATS = ("json", "text")
DEFAULT_LOG_FORMAT = "json"
#: The audit reads the whole journal: hourly keeps `/metrics` fresh without loading the database.
DEFAULT_AUDIT_INTERVAL = timedelta(hours=1)
#: LEDGER_AUDIT_INTERVAL values that turn the scheduled audit off.
AUDIT_OFF = frozenset({"0", "off"})
_DURATION = re.compile(r"(\d+)([dhms])")
_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


@dataclass(frozen=True)
class Settings:
    """Settings read from the environment.

    Attributes:
        database_url: SQLAlchemy URL of the ledger database.
        gateway: LEDGER_GATEWAY, or None when unset.
        stripe_api_key, stripe_webhook_secret: STRIPE_API_KEY, STRIPE_WEBHOOK_SECRET.
        stripe_api_base: STRIPE_API_BASE, to point the SDK at a local stand-in (tests).
        platform: the platform's name and legal details for invoices.
        request_timeout_seconds: LEDGER_REQUEST_TIMEOUT_SECONDS, the API's request timeout.
        idempotency_retention: LEDGER_IDEMPOTENCY_RETENTION, how long finished
            Idempotency-Keys are kept.
        idempotency_lease_margin: LEDGER_IDEMPOTENCY_LEASE_MARGIN, how long beyond the
            request timeout a claim in progress holds its key.
        log_format: LEDGER_LOG_FORMAT, `json` or `text`.
        audit_interval: LEDGER_AUDIT_INTERVAL, how often the worker runs the audit
            (None: never).
        metrics_multiprocess_dir: PROMETHEUS_MULTIPROC_DIR, where the server processes
            of `ledger serve --workers N` keep their metrics (None: one process).
    """

    database_url: str
    gateway: str | None = None
    platform: PlatformDetails = field(default_factory=PlatformDetails)
    stripe_api_key: str | None = None
    stripe_webhook_secret: str | None = None
    stripe_api_base: str | None = None
    request_timeout_seconds: float = DEFAULT_REQUEST_TIMEOUT_SECONDS
    idempotency_retention: timedelta = DEFAULT_IDEMPOTENCY_RETENTION
    idempotency_lease_margin: timedelta = DEFAULT_IDEMPOTENCY_LEASE_MARGIN
    log_format: str = DEFAULT_LOG_FORMAT
    audit_interval: timedelta | None = DEFAULT_AUDIT_INTERVAL
    metrics_multiprocess_dir: str | None = None


def parse_duration(text: str) -> timedelta:
    """A positive whole number of days, hours, minutes or seconds: `7d`, `24h`, `90m`, `30s`."""
    found = _DURATION.fullmatch(text.strip())
    if found is None or int(found.group(1)) == 0:
        raise ValueError(f"{text!r} is not a duration such as 7d, 24h, 90m or 30s")
    return timedelta(**{_UNITS[found.group(2)]: int(found.group(1))})


def _request_timeout(text: str | None) -> float:
    if not text:
        return DEFAULT_REQUEST_TIMEOUT_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds < float("inf"):
        raise ConfigurationError(
            f"LEDGER_REQUEST_TIMEOUT_SECONDS must be a positive number of seconds, not {text!r}",
            setting="LEDGER_REQUEST_TIMEOUT_SECONDS",
        )
    return seconds


def _duration(setting: str, text: str | None, default: timedelta) -> timedelta:
    if not text:
        return default
    try:
        return parse_duration(text)
    except ValueError as error:
        raise ConfigurationError(f"{setting}: {error}", setting=setting) from None


def _log_format(text: str | None) -> str:
    chosen = (text or DEFAULT_LOG_FORMAT).strip().lower()
    if chosen not in LOG_FORMATS:
        raise ConfigurationError(f"LEDGER_LOG_FORMAT must be json or text, not {text!r}", setting="LEDGER_LOG_FORMAT")
    return chosen


def _audit_interval(text: str | None) -> timedelta | None:
    if text is not None and text.strip().lower() in AUDIT_OFF:
        return None
    return _duration("LEDGER_AUDIT_INTERVAL", text, DEFAULT_AUDIT_INTERVAL)


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
        request_timeout_seconds=_request_timeout(env.get("LEDGER_REQUEST_TIMEOUT_SECONDS")),
        idempotency_retention=_duration(
            "LEDGER_IDEMPOTENCY_RETENTION", env.get("LEDGER_IDEMPOTENCY_RETENTION"), DEFAULT_IDEMPOTENCY_RETENTION
        ),
        idempotency_lease_margin=_duration(
            "LEDGER_IDEMPOTENCY_LEASE_MARGIN",
            env.get("LEDGER_IDEMPOTENCY_LEASE_MARGIN"),
            DEFAULT_IDEMPOTENCY_LEASE_MARGIN,
        ),
        log_format=_log_format(env.get("LEDGER_LOG_FORMAT")),
        audit_interval=_audit_interval(env.get("LEDGER_AUDIT_INTERVAL")),
        metrics_multiprocess_dir=env.get("PROMETHEUS_MULTIPROC_DIR") or None,
    )
