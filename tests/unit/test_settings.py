"""Settings of the API's request timeout, of Idempotency-Key retention and of the claim lease margin."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ledger.api.idempotency import claim_lease
from ledger.config import load_settings, parse_duration
from ledger.errors import ConfigurationError


def test_the_request_timeout_is_30_s_and_keys_are_kept_7_days_by_default() -> None:
    settings = load_settings({})
    assert settings.request_timeout_seconds == 30
    assert settings.idempotency_retention == timedelta(days=7)
    assert claim_lease(settings.request_timeout_seconds, settings.idempotency_lease_margin) == timedelta(seconds=60)


def test_the_request_timeout_and_the_retention_are_read_from_the_environment() -> None:
    settings = load_settings(
        {
            "LEDGER_REQUEST_TIMEOUT_SECONDS": "2.5",
            "LEDGER_IDEMPOTENCY_RETENTION": "24h",
            "LEDGER_IDEMPOTENCY_LEASE_MARGIN": "1s",
        }
    )
    assert settings.request_timeout_seconds == 2.5
    assert settings.idempotency_retention == timedelta(hours=24)
    assert claim_lease(settings.request_timeout_seconds, settings.idempotency_lease_margin) == timedelta(seconds=3.5)


@pytest.mark.parametrize(
    "environ",
    [
        {"LEDGER_REQUEST_TIMEOUT_SECONDS": "0"},
        {"LEDGER_REQUEST_TIMEOUT_SECONDS": "-1"},
        {"LEDGER_REQUEST_TIMEOUT_SECONDS": "nan"},
        {"LEDGER_REQUEST_TIMEOUT_SECONDS": "soon"},
        {"LEDGER_IDEMPOTENCY_RETENTION": "7"},
        {"LEDGER_IDEMPOTENCY_RETENTION": "0d"},
        {"LEDGER_IDEMPOTENCY_RETENTION": "1w"},
        {"LEDGER_IDEMPOTENCY_LEASE_MARGIN": "0s"},
        {"LEDGER_IDEMPOTENCY_LEASE_MARGIN": "soon"},
        {"LEDGER_LOG_FORMAT": "xml"},
        {"LEDGER_AUDIT_INTERVAL": "hourly"},
        {"LEDGER_AUDIT_INTERVAL": "0s"},
    ],
)
def test_a_malformed_setting_is_a_configuration_error_naming_it(environ: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError, match=next(iter(environ))):
        load_settings(environ)


@pytest.mark.parametrize(
    ("text", "duration"),
    [
        ("7d", timedelta(days=7)),
        ("24h", timedelta(hours=24)),
        ("90m", timedelta(minutes=90)),
        ("30s", timedelta(seconds=30)),
    ],
)
def test_a_duration_is_a_whole_number_of_days_hours_minutes_or_seconds(text: str, duration: timedelta) -> None:
    assert parse_duration(text) == duration


def test_logs_are_json_unless_text_is_asked_for_and_the_worker_audits_hourly_unless_turned_off() -> None:
    defaults = load_settings({})
    assert (defaults.log_format, defaults.audit_interval, defaults.metrics_multiprocess_dir) == (
        "json",
        timedelta(hours=1),
        None,
    )
    chosen = load_settings(
        {"LEDGER_LOG_FORMAT": "Text", "LEDGER_AUDIT_INTERVAL": "15m", "PROMETHEUS_MULTIPROC_DIR": "/run/metrics"}
    )
    assert (chosen.log_format, chosen.audit_interval, chosen.metrics_multiprocess_dir) == (
        "text",
        timedelta(minutes=15),
        "/run/metrics",
    )
    assert load_settings({"LEDGER_AUDIT_INTERVAL": "off"}).audit_interval is None
    assert load_settings({"LEDGER_AUDIT_INTERVAL": "0"}).audit_interval is None
