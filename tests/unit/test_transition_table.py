"""The escrow transition table (docs/architecture.md), as data: allowed moves and refusals."""

import pytest

from ledger.escrow.model import (
    ACTIVE,
    FINAL,
    HOLDING,
    TRANSITIONS,
    Event,
    InvalidTransition,
    MilestoneState,
    require_transition,
)

S, E = MilestoneState, Event

TABLE = [
    (S.DRAFT, E.REQUEST_FUNDING, {S.FUNDING}),
    (S.FUNDING, E.PAYMENT_CONFIRMED, {S.FUNDED}),
    (S.FUNDING, E.PAYMENT_FAILED, {S.DRAFT}),
    (S.FUNDED, E.SUBMIT, {S.SUBMITTED}),
    (S.CHANGES_REQUESTED, E.SUBMIT, {S.SUBMITTED}),
    (S.SUBMITTED, E.REQUEST_CHANGES, {S.CHANGES_REQUESTED}),
    (S.SUBMITTED, E.REVIEW_EXPIRED, {S.RELEASED}),
    (S.REFUND_REQUESTED, E.ACCEPT_REFUND, {S.REFUNDED}),
    (S.REFUND_REQUESTED, E.REFUND_REQUEST_EXPIRED, {S.REFUNDED}),
    (S.REFUND_REQUESTED, E.DISPUTE, {S.DISPUTED}),
    (S.DISPUTED, E.RESOLVE, {S.RELEASED, S.REFUNDED, S.SETTLED}),
    *[(state, E.APPROVE, {state, S.RELEASED, S.APPROVAL_PENDING}) for state in ACTIVE],
    (S.APPROVAL_PENDING, E.BONUS_CONFIRMED, {S.RELEASED}),
    (S.APPROVAL_PENDING, E.BONUS_WITHDRAWN, set(ACTIVE)),
    *[(state, E.CLIENT_ENDS, {S.REFUND_REQUESTED}) for state in ACTIVE],
    *[(state, E.FREELANCER_ENDS, {S.REFUNDED}) for state in ACTIVE],
    *[(state, E.CHARGEBACK_LOST, {state, S.REFUNDED}) for state in HOLDING],
]


@pytest.mark.parametrize(("state", "event", "targets"), TABLE)
def test_each_row_of_the_table_is_allowed(state: MilestoneState, event: Event, targets: set[MilestoneState]) -> None:
    assert require_transition("ms_1", state, event) == targets


def test_the_table_has_no_other_rows() -> None:
    assert set(TRANSITIONS) == {(state, event) for state, event, _ in TABLE}


@pytest.mark.parametrize("state", sorted(FINAL))
def test_final_states_allow_nothing(state: MilestoneState) -> None:
    for event in Event:
        with pytest.raises(InvalidTransition, match="it is final"):
            require_transition("ms_1", state, event)


def test_a_refusal_names_the_milestone_its_state_and_what_is_allowed() -> None:
    with pytest.raises(InvalidTransition) as caught:
        require_transition("ms_1", S.DRAFT, E.APPROVE)
    assert str(caught.value) == "milestone ms_1 is draft: cannot approve (allowed: request_funding)"
    assert caught.value.data == {"milestone_id": "ms_1", "state": "draft", "event": "approve"}


def test_the_review_clock_only_releases_submitted_work() -> None:
    for state in S:
        if state is not S.SUBMITTED:
            with pytest.raises(InvalidTransition):
                require_transition("ms_1", state, E.REVIEW_EXPIRED)
