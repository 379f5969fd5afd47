"""The auditor's proof: the ledger's invariants, checked over the whole database.

Each check is a pure function over the audit's read port
(`ledger.ports.queries.AuditQueries`) that streams the `Problem`s it finds, as data;
the runner keeps the first `MAX_PROBLEMS` of each and counts the rest, so memory
does not grow with the journal (the port streams its rows and the database computes
the sums). Checks, by the number of the invariant they prove:

1. `entries_balance`: every entry's debits equal its credits in each currency,
   and every entry has at least two postings.
2. `balances_match_postings`: every account's stored balance equals the sum of
   its postings; `floors_respected`: no balance is below its account's floor.
3. `trial_balance`: per currency, all debits equal all credits, over the postings
   and over the stored balances.
7. `idempotency_keys_unique`: no two entries share a key, and no entry is
   reversed twice.

And `actors_recorded`: every entry, payment order and state change names who did it.

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
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ledger.actors import PROCESS_ACTORS
from ledger.ports.queries import AuditQueries, JournalAuditQueries
from ledger.progress import Progress

MAX_PROBLEMS = 100

#: A value in a problem's details: an id, a code, an amount in minor units, a flag,
#: or a short list or table of them.
Detail = str | int | None | tuple[str | int, ...] | Mapping[str, int]


@dataclass(frozen=True)
class Problem:
    """A violation of an invariant, as data (beancount's `ValidationError` is the model).

    Attributes:
        check: the name of the check that found it.
        message: what is wrong, in words; empty when the figures in `details` say it.
        details: what it concerns and the figures that disagree (ids, codes, minor units),
            in the order they are shown.
    """

    check: str
    message: str
    details: Mapping[str, Detail]

    def to_dict(self) -> dict[str, object]:
        """The problem as JSON data: its details, and its message as `problem`."""
        found: dict[str, object] = {key: _plain(value) for key, value in self.details.items()}
        if self.message:
            found["problem"] = self.message
        return found


@dataclass(frozen=True)
class Note(Problem):
    """A finding a check reports without failing: listed under `notes`, not `problems`."""


def _plain(value: Detail) -> object:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Mapping):
        return dict(value)
    return value


Check = Callable[[AuditQueries], Iterator[Problem]]


def entries_balance(journal: JournalAuditQueries) -> Iterator[Problem]:
    for entry in journal.unbalanced_entries():
        yield Problem(
            "entries_balance",
            "debits differ from credits",
            {"entry_id": entry.entry_id, "currency": entry.currency, "debits": entry.debits, "credits": entry.credits},
        )
    for thin in journal.entries_with_fewer_postings(than=2):
        yield Problem(
            "entries_balance", "fewer than two postings", {"entry_id": thin.entry_id, "postings": thin.postings}
        )


def balances_match_postings(journal: JournalAuditQueries) -> Iterator[Problem]:
    for account in journal.account_totals():
        if account.stored != account.from_postings:
            yield Problem(
                "balances_match_postings",
                "",
                {
                    "account": account.code,
                    "currency": account.currency,
                    "stored_balance": account.stored,
                    "sum_of_postings": account.from_postings,
                },
            )


def floors_respected(journal: JournalAuditQueries) -> Iterator[Problem]:
    for account in journal.account_totals():
        if account.floor is None:
            continue
        for balance, measured_by in ((account.stored, "stored balance"), (account.from_postings, "sum of postings")):
            if balance < account.floor:
                yield Problem(
                    "floors_respected",
                    "",
                    {
                        "account": account.code,
                        "currency": account.currency,
                        "floor": account.floor,
                        "balance": balance,
                        "measured_by": measured_by,
                    },
                )
                break


def trial_balance(journal: JournalAuditQueries) -> Iterator[Problem]:
    for totals in journal.posting_totals_by_currency():
        if totals.debits != totals.credits:
            yield Problem(
                "trial_balance",
                "",
                {
                    "currency": totals.currency,
                    "debits": totals.debits,
                    "credits": totals.credits,
                    "measured_by": "postings",
                },
            )
    for stored in journal.stored_balances_by_currency():
        if stored.debits_minus_credits != 0:
            yield Problem(
                "trial_balance",
                "",
                {
                    "currency": stored.currency,
                    "debits_minus_credits": stored.debits_minus_credits,
                    "measured_by": "stored balances",
                },
            )


def idempotency_keys_unique(journal: JournalAuditQueries) -> Iterator[Problem]:
    for key in journal.repeated_idempotency_keys():
        yield Problem(
            "idempotency_keys_unique",
            "",
            {
                "idempotency_key": key.idempotency_key,
                "entries": key.entries,
                "first_entry_id": key.first_entry_id,
                "last_entry_id": key.last_entry_id,
            },
        )
    for reversed_ in journal.repeated_reversals():
        yield Problem(
            "idempotency_keys_unique",
            "reversed more than once",
            {"entry_id": reversed_.entry_id, "reversals": reversed_.reversals},
        )


def actors_recorded(journal: JournalAuditQueries) -> Iterator[Problem]:
    """Every entry, payment order and state change names who did it: a process
    (`ledger.actors.PROCESS_ACTORS`) or an API key that exists (revoked or not)."""
    keys: set[str] | None = None
    for found in journal.actor_rows():
        if found.actor in PROCESS_ACTORS:
            continue
        if keys is None:
            keys = journal.api_key_ids()
        if found.actor not in keys:
            yield Problem(
                "actors_recorded",
                "names no process and no API key",
                {"table": found.table, "actor": found.actor, "rows": found.rows},
            )


CORE_CHECKS: list[tuple[str, Check]] = [
    ("entries_balance", entries_balance),
    ("balances_match_postings", balances_match_postings),
    ("floors_respected", floors_respected),
    ("trial_balance", trial_balance),
    ("idempotency_keys_unique", idempotency_keys_unique),
    ("actors_recorded", actors_recorded),
]


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check.

    Attributes:
        name: the check's stable name.
        problems: the first `MAX_PROBLEMS` problems found.
        omitted: how many further problems were found and not listed.
        notes: findings that do not fail the check (the first `MAX_PROBLEMS`).
    """

    name: str
    problems: list[Problem] = field(default_factory=list)
    omitted: int = 0
    notes: list[Note] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        problems = [problem.to_dict() for problem in self.problems]
        if self.omitted:
            problems.append({"omitted": self.omitted, "problem": f"{self.omitted} more problems not listed"})
        found: dict[str, Any] = {"name": self.name, "ok": self.ok, "problems": problems}
        if self.notes:
            found["notes"] = [note.to_dict() for note in self.notes]
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
                lines.append("        " + ", ".join(f"{k}={v}" for k, v in problem.to_dict().items()))
            for note in check.notes[:10]:
                lines.append("        note: " + ", ".join(f"{k}={v}" for k, v in note.to_dict().items()))
            if found > 10:
                lines.append(f"        ... and {found - 10} more (use --json for up to {MAX_PROBLEMS})")
        lines.append("audit: " + ("all invariants hold" if self.ok else "INVARIANTS VIOLATED"))
        return "\n".join(lines)


def run_checks(
    queries: AuditQueries, checks: list[tuple[str, Check]] | None = None, progress: Progress | None = None
) -> AuditReport:
    """Run `checks` (the core's by default) over what `queries` reads; keep the first
    `MAX_PROBLEMS` problems and notes of each and count the problems omitted. `progress`
    is told each check done."""
    results = []
    chosen = CORE_CHECKS if checks is None else checks
    for name, check in chosen:
        problems: list[Problem] = []
        notes: list[Note] = []
        omitted = 0
        for problem in check(queries):
            if isinstance(problem, Note):
                if len(notes) < MAX_PROBLEMS:
                    notes.append(problem)
            elif len(problems) < MAX_PROBLEMS:
                problems.append(problem)
            else:
                omitted += 1
        results.append(CheckResult(name, problems, omitted, notes))
        if progress is not None:
            progress(len(results), len(chosen))
    return AuditReport(results)
