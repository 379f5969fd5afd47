"""Accounts: the chart of accounts' building block.

An account has a code (`liabilities:escrow:ms_123`), a type, one currency, a
normal side, an optional floor and metadata. The same code may exist once per
currency (`assets:psp:stripe` in USD and in EUR are two accounts).

Invariants kept here and in the database:
- an account's attributes never change once opened; opening it again with the
  same attributes is a no-op, with different ones an `AccountConflict`;
- an account with a floor keeps its balance in one row (one slot), so the floor
  is checked under that row's lock; an account without a floor may spread its
  balance over several slots, so a hot account does not serialize writers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ledger.errors import InvalidRequest
from ledger.money import MAX_MINOR_UNITS, normalize_currency, require_json_without_floats

#: Most slots one account may spread its balance over.
MAX_SLOTS = 64

_CODE = re.compile(r"^[a-z0-9][a-z0-9_.\-]*(:[a-z0-9_.\-]+)*$", re.IGNORECASE)


class Side(StrEnum):
    """The side of a posting or an account's normal balance."""

    DEBIT = "debit"
    CREDIT = "credit"


class AccountType(StrEnum):
    """The five kinds of account of double-entry bookkeeping."""

    ASSET = "asset"
    LIABILITY = "liability"
    EQUITY = "equity"
    REVENUE = "revenue"
    EXPENSE = "expense"

    @property
    def normal_side(self) -> Side:
        """Assets and expenses grow with debits; the others with credits."""
        return Side.DEBIT if self in (AccountType.ASSET, AccountType.EXPENSE) else Side.CREDIT


@dataclass(frozen=True)
class AccountSpec:
    """What it takes to open an account.

    Attributes:
        code: hierarchical name, segments separated by colons.
        type: asset, liability, equity, revenue or expense.
        currency: ISO 4217 code; the account holds only this currency.
        floor: lowest balance allowed, in minor units on the normal side (None: no floor).
        slots: balance rows to spread the balance over (1 for accounts with a floor).
        normal_side: defaults to the type's normal side.
        metadata: free-form JSON-able data (no floats).
    """

    code: str
    type: AccountType
    currency: str
    floor: int | None = None
    slots: int = 1
    normal_side: Side | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class Account:
    """An opened account.

    Attributes:
        id: database id; balance rows are locked in (id, slot) order.
        code, type, currency, normal_side, floor, slots, metadata: as in `AccountSpec`.
    """

    id: int
    code: str
    type: AccountType
    currency: str
    normal_side: Side
    floor: int | None
    slots: int
    metadata: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def signed(self, side: Side, amount: int) -> int:
        """How a posting of `amount` on `side` moves this account's (normal-side) balance."""
        return amount if side == self.normal_side else -amount

    def same_attributes(self, spec: AccountSpec) -> bool:
        return (
            self.type == spec.type
            and self.normal_side == (spec.normal_side or spec.type.normal_side)
            and self.floor == spec.floor
            and self.slots == spec.slots
            and dict(self.metadata) == dict(spec.metadata)
        )


def validate_account_code(code: object) -> str:
    if not isinstance(code, str) or not (1 <= len(code) <= 200) or not _CODE.match(code):
        raise InvalidRequest(
            f"account code {code!r} is invalid: use colon-separated segments of letters, "
            "digits, '_', '-' or '.', at most 200 characters",
            field="code",
            account=code,
        )
    return code


def normalize_spec(spec: AccountSpec) -> AccountSpec:
    """Validate a spec and fill in its defaults."""
    validate_account_code(spec.code)
    account_type = AccountType(spec.type)
    currency = normalize_currency(spec.currency)
    if spec.floor is not None and (
        isinstance(spec.floor, bool) or not isinstance(spec.floor, int) or abs(spec.floor) > MAX_MINOR_UNITS
    ):
        raise InvalidRequest("an account floor is an integer of minor units", field="floor", account=spec.code)
    if isinstance(spec.slots, bool) or not isinstance(spec.slots, int) or not 1 <= spec.slots <= MAX_SLOTS:
        raise InvalidRequest(f"slots must be between 1 and {MAX_SLOTS}", field="slots", account=spec.code)
    if spec.floor is not None and spec.slots != 1:
        raise InvalidRequest(
            "an account with a floor keeps its balance in one slot (its floor is checked under that row's lock)",
            field="slots",
            account=spec.code,
        )
    require_json_without_floats(spec.metadata, "metadata")
    return AccountSpec(
        code=spec.code,
        type=account_type,
        currency=currency,
        floor=spec.floor,
        slots=spec.slots,
        normal_side=Side(spec.normal_side) if spec.normal_side else account_type.normal_side,
        metadata=dict(spec.metadata),
    )
