"""Accounts and balances in the database.

Account attributes never change once opened, so they are cached per process once
their transaction has committed (the posting hot path then needs no account
lookups; docs/architecture.md, "Server processes and caches"). Balances are stored
per (account, slot) on the account's normal side; an account's balance is the sum
of its slots.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Case, case, func, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Row

from ledger.accounts import Account, AccountSpec, AccountType, Side
from ledger.db.schema import accounts, balances, entries, postings
from ledger.errors import AccountConflict, CurrencyMismatch, UnknownAccount
from ledger.ports.accounting import AccountKey

if TYPE_CHECKING:
    from ledger.db.unit_of_work import UnitOfWork


#: Accounts looked up per statement by `resolve`.
RESOLVE_CHUNK = 500


class AccountCache:
    """Committed accounts by (code, currency); safe to share between threads."""

    def __init__(self) -> None:
        self._by_key: dict[AccountKey, Account] = {}

    def get(self, key: AccountKey) -> Account | None:
        return self._by_key.get(key)

    def add(self, account: Account) -> None:
        self._by_key[(account.code, account.currency)] = account

    def clear(self) -> None:
        self._by_key.clear()


def account_from_row(row: Row[tuple[object, ...]]) -> Account:
    m = row._mapping
    return Account(
        id=int(m["id"]),
        code=str(m["code"]),
        type=AccountType(m["type"]),
        currency=str(m["currency"]),
        normal_side=Side(m["normal_side"]),
        floor=None if m["floor"] is None else int(m["floor"]),
        slots=int(m["slots"]),
        metadata=dict(m["metadata"]),
    )


class AccountStore:
    def __init__(self, uow: UnitOfWork, cache: AccountCache) -> None:
        self._uow = uow
        self._conn = uow.connection
        self._cache = cache
        #: accounts this transaction has opened or read: valid for as long as it lasts
        self._seen: dict[AccountKey, Account] = {}

    def _remember_after_commit(self, account: Account) -> None:
        self._seen[(account.code, account.currency)] = account
        # Never cache an account from a transaction that may still roll back.
        self._uow.after_commit(lambda: self._cache.add(account))

    def _known(self, key: AccountKey) -> Account | None:
        return self._cache.get(key) or self._seen.get(key)

    def open(self, spec: AccountSpec) -> Account:
        assert spec.normal_side is not None, "normalize the spec first"
        existing = self.find(spec.code, spec.currency)
        if existing is None:
            insert = postgresql.insert if self._uow.dialect == "postgresql" else sqlite.insert
            statement = (
                insert(accounts)
                .values(
                    code=spec.code,
                    currency=spec.currency,
                    type=spec.type.value,
                    normal_side=spec.normal_side.value,
                    floor=spec.floor,
                    slots=spec.slots,
                    metadata=dict(spec.metadata),
                    created_at=self._uow.clock.now(),
                )
                .on_conflict_do_nothing(index_elements=["code", "currency"])
                .returning(accounts.c.id)
            )
            new_id = self._conn.execute(statement).scalar()
            if new_id is not None:
                self._conn.execute(
                    balances.insert(), [{"account_id": new_id, "slot": s, "balance": 0} for s in range(spec.slots)]
                )
                account = Account(
                    id=int(new_id),
                    code=spec.code,
                    type=spec.type,
                    currency=spec.currency,
                    normal_side=spec.normal_side,
                    floor=spec.floor,
                    slots=spec.slots,
                    metadata=dict(spec.metadata),
                )
                self._remember_after_commit(account)
                return account
            existing = self.find(spec.code, spec.currency)  # opened concurrently
            assert existing is not None
        if not existing.same_attributes(spec):
            raise AccountConflict(
                f"account {spec.code} ({spec.currency}) exists with other attributes",
                account=spec.code,
                currency=spec.currency,
            )
        return existing

    def find(self, code: str, currency: str) -> Account | None:
        cached = self._known((code, currency))
        if cached is not None:
            return cached
        row = self._conn.execute(
            select(accounts).where(accounts.c.code == code, accounts.c.currency == currency)
        ).first()
        if row is None:
            return None
        account = account_from_row(row)
        self._remember_after_commit(account)
        return account

    def get(self, code: str, currency: str) -> Account:
        account = self.find(code, currency)
        if account is None:
            raise self._missing(code, currency)
        return account

    def resolve(self, keys: Iterable[AccountKey]) -> dict[AccountKey, Account]:
        """Look up many accounts at once (one query for those not cached)."""
        found: dict[AccountKey, Account] = {}
        missing: list[AccountKey] = []
        for key in set(keys):
            cached = self._known(key)
            if cached is None:
                missing.append(key)
            else:
                found[key] = cached
        if missing:
            # In chunks: a batch may name thousands of accounts, more than one statement
            # should carry (SQLite limits an expression's depth and its parameters).
            for start in range(0, len(missing), RESOLVE_CHUNK):
                chunk = missing[start : start + RESOLVE_CHUNK]
                condition = tuple_(accounts.c.code, accounts.c.currency).in_(chunk)
                for row in self._conn.execute(select(accounts).where(condition)):
                    account = account_from_row(row)
                    found[(account.code, account.currency)] = account
                    self._remember_after_commit(account)
            for code, currency in missing:
                if (code, currency) not in found:
                    raise self._missing(code, currency)
        return found

    def _missing(self, code: str, currency: str) -> Exception:
        other = self._conn.execute(select(accounts.c.currency).where(accounts.c.code == code).limit(1)).scalar()
        if other is not None:
            return CurrencyMismatch(
                f"account {code} holds {other}, not {currency}",
                account=code,
                account_currency=other,
                currency=currency,
            )
        return UnknownAccount(f"no account {code} in {currency}", account=code, currency=currency)

    def all_with_codes(self, codes: list[str]) -> list[Account]:
        """Every account with one of these codes, in any currency."""
        rows = self._conn.execute(select(accounts).where(accounts.c.code.in_(codes)).order_by(accounts.c.id))
        return [account_from_row(row) for row in rows]

    def all(self) -> Iterator[Account]:
        for row in self._conn.execute(select(accounts).order_by(accounts.c.id)):
            yield account_from_row(row)

    def newest_first(self, *, starting_after: int | None, limit: int) -> list[Account]:
        """Accounts newest first, after a cursor (an account id)."""
        query = select(accounts).order_by(accounts.c.id.desc()).limit(limit)
        if starting_after is not None:
            query = query.where(accounts.c.id < starting_after)
        return [account_from_row(row) for row in self._conn.execute(query)]

    # --- balances --------------------------------------------------------------

    def balance(self, account: Account) -> int:
        """The stored balance now: the sum of the account's slots."""
        total = self._conn.execute(
            select(func.coalesce(func.sum(balances.c.balance), 0)).where(balances.c.account_id == account.id)
        ).scalar_one()
        return int(total)

    def balances_of(self, accounts: Iterable[Account]) -> dict[int, int]:
        ids = [a.id for a in accounts]
        rows = self._conn.execute(
            select(balances.c.account_id, func.sum(balances.c.balance))
            .where(balances.c.account_id.in_(ids))
            .group_by(balances.c.account_id)
        )
        return {int(account_id): int(total) for account_id, total in rows}

    def balance_as_of(self, account: Account, as_of: datetime) -> int:
        """The balance from postings of entries effective strictly before `as_of`."""
        signed = _signed_amount(account.normal_side)
        total = self._conn.execute(
            select(func.coalesce(func.sum(signed), 0))
            .select_from(postings.join(entries, entries.c.id == postings.c.entry_id))
            .where(postings.c.account_id == account.id, entries.c.effective_at < as_of)
        ).scalar_one()
        return int(total)

    def balances_for_keys(self, keys: list[tuple[int, int]]) -> dict[tuple[int, int], int]:
        rows = self._conn.execute(
            select(balances.c.account_id, balances.c.slot, balances.c.balance).where(
                tuple_(balances.c.account_id, balances.c.slot).in_(keys)
            )
        )
        return {(int(a), int(s)): int(b) for a, s, b in rows}


def _signed_amount(normal_side: Side) -> Case[int]:
    """SQL for a posting's effect on a balance kept on `normal_side`."""
    return case((postings.c.side == normal_side.value, postings.c.amount), else_=-postings.c.amount)
