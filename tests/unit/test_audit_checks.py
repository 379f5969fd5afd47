"""The audit's checks are pure functions of the rows its read port returns: each
names what disagrees as a frozen `Problem`, and the report's JSON keeps its shape."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping

import pytest

from ledger.audit import Note, Problem, balances_match_postings, floors_respected, run_checks
from ledger.fees.checks import fee_chain
from ledger.fees.schedule import FeeSchedule
from ledger.ports.queries import AccountTotals, FeeChainLink, PairBillings


class Accounts:
    """A journal audit port that knows only account totals."""

    def __init__(self, *totals: AccountTotals) -> None:
        self.totals = totals

    def account_totals(self) -> Iterator[AccountTotals]:
        yield from self.totals


class Fees:
    """A fee audit port over a fixed chain: one pair, no fee charged, and an orphan pair."""

    def fee_schedules(self) -> Mapping[int, FeeSchedule]:
        return {1: FeeSchedule.from_data({"name": "free", "tiers": {"USD": [{"up_to": None, "rate": "0"}]}})}

    def fee_chain(self) -> Iterator[FeeChainLink]:
        yield FeeChainLink(1, "fr_1", "cl_1", "USD", 1, 0, 100, 0)
        yield FeeChainLink(2, "fr_1", "cl_2", "USD", 1, 0, 50, 0)

    def pair_billings(self) -> Iterator[PairBillings]:
        yield PairBillings("fr_1", "cl_1", "USD", 100, 100)


def test_a_stored_balance_that_differs_from_its_postings_is_one_problem_with_its_figures() -> None:
    [problem] = balances_match_postings(Accounts(AccountTotals("assets:x", "USD", None, 7, 0)))
    assert problem == Problem(
        "balances_match_postings",
        "",
        {"account": "assets:x", "currency": "USD", "stored_balance": 7, "sum_of_postings": 0},
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        problem.message = "changed"


def test_a_floor_is_measured_by_the_stored_balance_first() -> None:
    below = AccountTotals("liabilities:escrow:ms_1", "USD", 0, -4, -4)
    [problem] = floors_respected(Accounts(below, AccountTotals("assets:x", "USD", None, -9, -9)))
    assert problem.details["measured_by"] == "stored balance" and problem.details["balance"] == -4


def test_fee_events_of_a_pair_without_lifetime_billings_are_named() -> None:
    [problem] = fee_chain(Fees())
    assert problem.to_dict() == {"pair": ["fr_1", "cl_2", "USD"], "problem": "fee events without lifetime billings"}


def test_notes_are_listed_apart_and_problems_serialise_with_their_message_last() -> None:
    def check(_: object) -> Iterator[Problem]:
        yield Note("c", "", {"applies": False})
        yield Problem("c", "fewer than two postings", {"entry_id": 2, "postings": 0})

    report = run_checks(None, [("c", check)])
    assert report.to_dict() == {
        "ok": False,
        "checks": [
            {
                "name": "c",
                "ok": False,
                "problems": [{"entry_id": 2, "postings": 0, "problem": "fewer than two postings"}],
                "notes": [{"applies": False}],
            }
        ],
    }
