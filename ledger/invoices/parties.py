"""Party records: who clients and freelancers are, for invoices and the payment provider.

Set through the service layer or `ledger parties set`. Only the display name is
required; invoices print what is known and never fail for a missing optional field.
"""

from __future__ import annotations

from datetime import datetime

from ledger.clock import parse_instant, require_utc
from ledger.errors import InvalidRequest
from ledger.escrow.model import party_id as valid_party_id
from ledger.invoices.documents import PARTY_FIELDS, Party, UnknownParty
from ledger.ports.unit_of_work import UnitOfWork

LIMITS = {"display_name": 200, "legal_name": 200, "address": 500, "country": 2, "tax_id": 64, "provider_id": 255}


def set_party(uow: UnitOfWork, party_id: str, **fields: str | None) -> Party:
    """Create or update a party; fields given as None keep their current value."""
    pid = valid_party_id(party_id, "party_id")
    unknown = set(fields) - set(PARTY_FIELDS)
    if unknown:
        raise InvalidRequest(f"unknown party fields: {', '.join(sorted(unknown))}", field=sorted(unknown)[0])
    values: dict[str, str | None] = {}
    verified_at = _verified_at(fields.pop("payment_method_verified_at", None))
    for name, value in fields.items():
        if value is None:
            continue
        if not isinstance(value, str):
            raise InvalidRequest(f"{name} is a string", field=name)
        value = value.strip()
        if name == "country":
            if len(value) != 2 or not value.isalpha():
                raise InvalidRequest("country is an ISO 3166 alpha-2 code such as DE or US", field="country")
            value = value.upper()
        if len(value) > LIMITS[name]:
            raise InvalidRequest(f"{name} is at most {LIMITS[name]} characters", field=name)
        values[name] = value or None
    existing = uow.documents.party(pid)
    if existing is None and not values.get("display_name"):
        raise InvalidRequest("a new party needs a display name", field="display_name")
    if "display_name" in values and not values["display_name"]:
        raise InvalidRequest("the display name cannot be empty", field="display_name")

    now = uow.clock.now()
    current = existing or Party(pid, "", None, None, None, None, None, now)
    display_name = values.get("display_name", current.display_name)
    assert display_name, "checked above"
    uow.documents.save_party(
        Party(
            party_id=pid,
            display_name=display_name,
            legal_name=values.get("legal_name", current.legal_name),
            address=values.get("address", current.address),
            country=values.get("country", current.country),
            tax_id=values.get("tax_id", current.tax_id),
            provider_id=values.get("provider_id", current.provider_id),
            updated_at=now,
            payment_method_verified_at=verified_at or current.payment_method_verified_at,
        )
    )
    return get_party(uow, pid)


def _verified_at(value: object) -> datetime | None:
    """The time the client's payment method was verified: an ISO 8601 time with its offset."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return require_utc(value)
    if not isinstance(value, str):
        raise InvalidRequest("payment_method_verified_at is an ISO 8601 time", field="payment_method_verified_at")
    try:
        return parse_instant(value.replace("Z", "+00:00"), "payment_method_verified_at")
    except ValueError as refused:
        raise InvalidRequest(str(refused), field="payment_method_verified_at") from None


def get_party(uow: UnitOfWork, party_id: str) -> Party:
    record = uow.documents.party(party_id)
    if record is None:
        raise UnknownParty(f"no party {party_id}", party_id=party_id)
    return record
