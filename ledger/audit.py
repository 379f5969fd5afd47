"""The auditor's proof: the ledger's invariants, checked over the whole database.

Each check is a function that streams the problems it finds as plain data; the
runner keeps the first `MAX_PROBLEMS` of each and counts the rest, so memory does
not grow with the journal (rows come through server-side cursors and the sums are
computed by the database). Checks (numbers from DESIGN.md, "Invariants"):

1. `entries_balance`: every entry's debits equal its credits in each currency,
   and every entry has at least two postings.
2. `balances_match_postings`: every account's stored balance equals the sum of
   its postings; `floors_respected`: no balance is below its account's floor.
3. `trial_balance`: per currency, all debits equal all credits, over the postings
   and over the stored balances.
7. `idempotency_keys_unique`: no two entries share a key, and no entry is
   reversed twice.

The fee engine (`ledger.fees.checks`, invariant 6) and escrow
(`ledger.escrow.checks`, invariants 4 and 5; `ledger.escrow.provider_checks`,
invariant 10, given the provider's books) add their own checks; `Ledger.audit`
runs them all.

A check may also report a `Note`: a finding worth reading that is not a violation
(money the provider moved that the ledger has not booked yet; a check that does
not apply). Notes are listed apart and never fail the check.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, case, func, literal, select

from ledger.db.schema import accounts, balances, entries, postings

MAX_PROBLEMS = 100
STREAM_ROWS = 1000

Problem = dict[str, Any]
Check = Callable[[Connection], Iterator[Problem]]


class Note(dict[str, Any]):
    """A finding a check reports without failing: listed under `notes`, not `problems`."""


_debit = case((postings.c.side == "debit", postings.c.amount), else_=0)
_credit = case((postings.c.side == "credit", postings.c.amount), else_=0)


def stream(connection: Connection, statement: Any) -> Iterator[Any]:
    yield from connection.execution_options(yield_per=STREAM_ROWS).execute(statement)


def entries_balance(connection: Connection) -> Iterator[Problem]:
    unbalanced = (
        select(postings.c.entry_id, postings.c.currency, func.sum(_debit), func.sum(_credit))
        .group_by(postings.c.entry_id, postings.c.currency)
        .having(func.sum(_debit) != func.sum(_credit))
        .order_by(postings.c.entry_id, postings.c.currency)
    )
    for entry_id, currency, debits, credits in stream(connection, unbalanced):
        yield {
            "entry_id": int(entry_id),
            "currency": currency,
            "debits": int(debits),
            "credits": int(credits),
            "problem": "debits differ from credits",
        }
    counts = (
        select(postings.c.entry_id.label("entry_id"), func.count().label("n")).group_by(postings.c.entry_id).subquery()
    )
    too_few = (
        select(entries.c.id, func.coalesce(counts.c.n, 0))
        .select_from(entries.outerjoin(counts, counts.c.entry_id == entries.c.id))
        .where(func.coalesce(counts.c.n, 0) < 2)
        .order_by(entries.c.id)
    )
    for entry_id, n in stream(connection, too_few):
        yield {"entry_id": int(entry_id), "postings": int(n), "problem": "fewer than two postings"}


def _account_sums() -> Any:
    posted = (
        select(
            postings.c.account_id.label("account_id"),
            func.sum(_debit).label("debits"),
            func.sum(_credit).label("credits"),
        )
        .group_by(postings.c.account_id)
        .subquery()
    )
    stored = (
        select(balances.c.account_id.label("account_id"), func.sum(balances.c.balance).label("stored"))
        .group_by(balances.c.account_id)
        .subquery()
    )
    debits = func.coalesce(posted.c.debits, 0)
    credits = func.coalesce(posted.c.credits, 0)
    from_postings = case((accounts.c.normal_side == "debit", debits - credits), else_=credits - debits)
    return (
        select(
            accounts.c.id,
            accounts.c.code,
            accounts.c.currency,
            accounts.c.normal_side,
            accounts.c.floor,
            func.coalesce(stored.c.stored, 0).label("stored"),
            from_postings.label("from_postings"),
        )
        .select_from(
            accounts.outerjoin(posted, posted.c.account_id == accounts.c.id).outerjoin(
                stored, stored.c.account_id == accounts.c.id
            )
        )
        .order_by(accounts.c.id)
    )


def balances_match_postings(connection: Connection) -> Iterator[Problem]:
    for row in stream(connection, _account_sums()):
        if int(row.stored) != int(row.from_postings):
            yield {
                "account": row.code,
                "currency": row.currency,
                "stored_balance": int(row.stored),
                "sum_of_postings": int(row.from_postings),
            }


def floors_respected(connection: Connection) -> Iterator[Problem]:
    statement = _account_sums().where(accounts.c.floor.is_not(None))
    for row in stream(connection, statement):
        for what in ("stored", "from_postings"):
            if int(getattr(row, what)) < int(row.floor):
                yield {
                    "account": row.code,
                    "currency": row.currency,
                    "floor": int(row.floor),
                    "balance": int(getattr(row, what)),
                    "measured_by": "stored balance" if what == "stored" else "sum of postings",
                }
                break


def trial_balance(connection: Connection) -> Iterator[Problem]:
    by_postings = (
        select(postings.c.currency, func.sum(_debit), func.sum(_credit))
        .group_by(postings.c.currency)
        .order_by(postings.c.currency)
    )
    for currency, debits, credits in stream(connection, by_postings):
        if int(debits) != int(credits):
            yield {"currency": currency, "debits": int(debits), "credits": int(credits), "measured_by": "postings"}
    signed = case((accounts.c.normal_side == "debit", balances.c.balance), else_=literal(0) - balances.c.balance)
    by_balances = (
        select(accounts.c.currency, func.sum(signed))
        .select_from(balances.join(accounts, accounts.c.id == balances.c.account_id))
        .group_by(accounts.c.currency)
        .order_by(accounts.c.currency)
    )
    for currency, net in stream(connection, by_balances):
        if int(net) != 0:
            yield {"currency": currency, "debits_minus_credits": int(net), "measured_by": "stored balances"}


def idempotency_keys_unique(connection: Connection) -> Iterator[Problem]:
    keys = (
        select(entries.c.idempotency_key, func.count(), func.min(entries.c.id), func.max(entries.c.id))
        .group_by(entries.c.idempotency_key)
        .having(func.count() > 1)
        .order_by(entries.c.idempotency_key)
    )
    for key, n, first, last in stream(connection, keys):
        yield {"idempotency_key": key, "entries": int(n), "first_entry_id": int(first), "last_entry_id": int(last)}
    reversals = (
        select(entries.c.reverses_entry_id, func.count())
        .where(entries.c.reverses_entry_id.is_not(None))
        .group_by(entries.c.reverses_entry_id)
        .having(func.count() > 1)
        .order_by(entries.c.reverses_entry_id)
    )
    for entry_id, n in stream(connection, reversals):
        yield {"entry_id": int(entry_id), "reversals": int(n), "problem": "reversed more than once"}


CORE_CHECKS: list[tuple[str, Check]] = [
    ("entries_balance", entries_balance),
    ("balances_match_postings", balances_match_postings),
    ("floors_respected", floors_respected),
    ("trial_balance", trial_balance),
    ("idempotency_keys_unique", idempotency_keys_unique),
]


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check.

    Attributes:
        name: the check's stable name.
        problems: the first `MAX_PROBLEMS` problems found, as plain data.
        omitted: how many further problems were found and not listed.
        notes: findings that do not fail the check (the first `MAX_PROBLEMS`).
    """

    name: str
    problems: list[Problem] = field(default_factory=list)
    omitted: int = 0
    notes: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        problems = list(self.problems)
        if self.omitted:
            problems.append({"omitted": self.omitted, "problem": f"{self.omitted} more problems not listed"})
        found: dict[str, Any] = {"name": self.name, "ok": self.ok, "problems": problems}
        if self.notes:
            found["notes"] = [dict(note) for note in self.notes]
        return found


@dataclass(frozen=True)
class AuditReport:
    """All checks' results; `ok` only if every check passed."""

    checks: list[CheckResult]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [check.to_dict() for check in self.checks]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def summary(self) -> str:
        lines = []
        for check in self.checks:
            found = len(check.problems) + check.omitted
            lines.append(
                f"{'ok  ' if check.ok else 'FAIL'}  {check.name}" + ("" if check.ok else f": {found} problems")
            )
            for problem in check.problems[:10]:
                lines.append("        " + ", ".join(f"{k}={v}" for k, v in problem.items()))
            for note in check.notes[:10]:
                lines.append("        note: " + ", ".join(f"{k}={v}" for k, v in note.items()))
            if found > 10:
                lines.append(f"        ... and {found - 10} more (use --json for up to {MAX_PROBLEMS})")
        lines.append("audit: " + ("all invariants hold" if self.ok else "INVARIANTS VIOLATED"))
        return "\n".join(lines)


def run_checks(connection: Connection, checks: list[tuple[str, Check]] | None = None) -> AuditReport:
    results = []
    for name, check in CORE_CHECKS if checks is None else checks:
        problems: list[Problem] = []
        notes: list[Problem] = []
        omitted = 0
        for problem in check(connection):
            if isinstance(problem, Note):
                if len(notes) < MAX_PROBLEMS:
                    notes.append(problem)
            elif len(problems) < MAX_PROBLEMS:
                problems.append(problem)
            else:
                omitted += 1
        results.append(CheckResult(name, problems, omitted, notes))
    return AuditReport(results)
