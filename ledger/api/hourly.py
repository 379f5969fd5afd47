"""`/v1/contracts/{id}/time`, `/weeks`, `/pause`, `/resume`, `/bonus` (marketplace):
the time of hourly contracts, its weeks as they stand, and bonuses. A fixed-price contract answers
409 `wrong-contract-type` on each of them."""

from __future__ import annotations

from datetime import date
from typing import Any

from litestar import Controller, Request, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody

from ledger.api.auth import ADMIN, MARKETPLACE
from ledger.api.idempotent import idempotent
from ledger.api.pagination import PageRequest
from ledger.api.schemas import (
    ContractOut,
    HourlyBonusCreate,
    HourlyBonusOut,
    ResolveDispute,
    SegmentCreate,
    SegmentList,
    SegmentOut,
    WeekDisputeCreate,
    WeekList,
    WeekOut,
)
from ledger.api.views import hourly_bonus_out, read_contract, segment_out, week_out
from ledger.escrow.hourly_calendar import parse_monday
from ledger.escrow.model import UnknownMilestone
from ledger.escrow.service import Escrow
from ledger.escrow.timesheet import Segment
from ledger.service import Ledger


def _before(page: PageRequest) -> date | None:
    """A weeks page's cursor: the ordinal of the last Monday shown (weeks go newest first)."""
    after = page.after_id()
    if after is None:
        return None
    return date.fromordinal(max(1, min(after, date.max.toordinal())))


class HourlyController(Controller):
    path = "/v1/contracts"
    tags = ["escrow"]
    opt = {"roles": MARKETPLACE}

    @post("/{contract_id:str}/time", operation_id="logTime", sync_to_thread=True, status_code=201)
    @idempotent
    def log(
        self,
        request: Request[Any, Any, Any],
        escrow: NamedDependency[Escrow],
        request_key: NamedDependency[str | None],
        contract_id: FromPath[str],
        data: JSONBody[SegmentCreate],
    ) -> SegmentOut:
        """Log a segment of time: on 10-minute boundaries, within one week, not in the future,
        in a week that has not closed (Monday 12:00 after it), overlapping nothing (409)."""
        segment = Segment(start=data.start, end=data.end, memo=data.memo, manual=data.manual)
        saved = escrow.hourly.log_segment(contract_id, segment, request_key=request_key)
        return segment_out(contract_id, saved)

    @get("/{contract_id:str}/time", operation_id="listTime", sync_to_thread=True)
    def list_time(
        self,
        escrow: NamedDependency[Escrow],
        page: NamedDependency[PageRequest],
        contract_id: FromPath[str],
        week: FromQuery[str | None] = None,
    ) -> SegmentList:
        """The contract's segments (of the week of Monday `week`, YYYY-MM-DD, when given), in
        the order they were logged."""
        monday = None if week is None else parse_monday(week)
        found = escrow.hourly.segments(contract_id, week=monday, after_id=page.after_id(), limit=page.fetch)
        return page.listing(
            SegmentList, found, lambda segment: segment_out(contract_id, segment), cursor=lambda s: s.id
        )

    @delete("/{contract_id:str}/time/{segment_id:str}", operation_id="deleteTime", sync_to_thread=True, status_code=200)
    @idempotent
    def delete_time(
        self,
        request: Request[Any, Any, Any],
        escrow: NamedDependency[Escrow],
        request_key: NamedDependency[str | None],
        contract_id: FromPath[str],
        segment_id: FromPath[str],
    ) -> SegmentOut:
        """Delete a segment while its week is open; after it closes, 409 `week-closed`."""
        deleted = escrow.hourly.delete_segment(contract_id, segment_id, request_key=request_key)
        return segment_out(contract_id, deleted)

    @get("/{contract_id:str}/weeks", operation_id="listWeeks", sync_to_thread=True)
    def list_weeks(
        self, escrow: NamedDependency[Escrow], page: NamedDependency[PageRequest], contract_id: FromPath[str]
    ) -> WeekList:
        """The weeks with logged time, newest first."""
        found = escrow.hourly.weeks(contract_id, before=_before(page), limit=page.fetch)
        return page.listing(WeekList, found, week_out, cursor=lambda view: view.week.toordinal())

    @get("/{contract_id:str}/weeks/{monday:str}", operation_id="getWeek", sync_to_thread=True)
    def week(self, escrow: NamedDependency[Escrow], contract_id: FromPath[str], monday: FromPath[str]) -> WeekOut:
        """A week (named by its Monday, YYYY-MM-DD) as it would be billed now."""
        return week_out(escrow.hourly.week(contract_id, parse_monday(monday, "monday")))

    @post("/{contract_id:str}/pause", operation_id="pauseContract", sync_to_thread=True, status_code=200)
    @idempotent
    def pause(
        self,
        request: Request[Any, Any, Any],
        book: NamedDependency[Ledger],
        escrow: NamedDependency[Escrow],
        request_key: NamedDependency[str | None],
        contract_id: FromPath[str],
    ) -> ContractOut:
        """Pause an hourly contract: no time may be logged until it is resumed."""
        escrow.hourly.pause(contract_id, request_key=request_key)
        return read_contract(book, contract_id)

    @post("/{contract_id:str}/resume", operation_id="resumeContract", sync_to_thread=True, status_code=200)
    @idempotent
    def resume(
        self,
        request: Request[Any, Any, Any],
        book: NamedDependency[Ledger],
        escrow: NamedDependency[Escrow],
        request_key: NamedDependency[str | None],
        contract_id: FromPath[str],
    ) -> ContractOut:
        """Resume a paused hourly contract."""
        escrow.hourly.resume(contract_id, request_key=request_key)
        return read_contract(book, contract_id)

    @post("/{contract_id:str}/bonus", operation_id="payHourlyBonus", sync_to_thread=True, status_code=201)
    @idempotent
    def bonus(
        self,
        request: Request[Any, Any, Any],
        escrow: NamedDependency[Escrow],
        request_key: NamedDependency[str | None],
        contract_id: FromPath[str],
        data: JSONBody[HourlyBonusCreate],
    ) -> HourlyBonusOut:
        """Pay the freelancer a bonus on an hourly contract: the client is charged at once
        and the bonus is released as its own payment when the charge succeeds, less the
        service fee on the pair's lifetime billings. `state` says where it stands."""
        currency = escrow.hourly.currency_of(contract_id)
        bonus = escrow.hourly.pay_bonus(
            contract_id, amount=data.amount.minor(currency), memo=data.memo, request_key=request_key
        )
        return hourly_bonus_out(bonus)

    @get("/{contract_id:str}/bonuses/{bonus_id:str}", operation_id="getHourlyBonus", sync_to_thread=True)
    def get_bonus(
        self, escrow: NamedDependency[Escrow], contract_id: FromPath[str], bonus_id: FromPath[str]
    ) -> HourlyBonusOut:
        """A bonus as it stands."""
        bonus = escrow.hourly.bonus(bonus_id)
        if bonus.subject.contract_id != contract_id:
            raise UnknownMilestone(f"no bonus {bonus_id} on contract {contract_id}", milestone_id=bonus_id)
        return hourly_bonus_out(bonus)

    @post(
        "/{contract_id:str}/weeks/{monday:str}/dispute",
        operation_id="disputeWeek",
        sync_to_thread=True,
        status_code=201,
    )
    @idempotent
    def dispute_week(
        self,
        request: Request[Any, Any, Any],
        escrow: NamedDependency[Escrow],
        request_key: NamedDependency[str | None],
        contract_id: FromPath[str],
        monday: FromPath[str],
        data: JSONBody[WeekDisputeCreate],
    ) -> WeekOut:
        """The client disputes the week's last `minutes` billable minutes, with a reason,
        until its review ends: only their amount is held, the contract is paused."""
        week = parse_monday(monday, "monday")
        return week_out(
            escrow.hourly.dispute_week(
                contract_id, week, minutes=data.minutes, reason=data.reason, request_key=request_key
            )
        )

    @post(
        "/{contract_id:str}/weeks/{monday:str}/dispute/accept",
        operation_id="acceptWeekDispute",
        sync_to_thread=True,
        status_code=200,
    )
    @idempotent
    def accept_dispute(
        self,
        request: Request[Any, Any, Any],
        escrow: NamedDependency[Escrow],
        request_key: NamedDependency[str | None],
        contract_id: FromPath[str],
        monday: FromPath[str],
    ) -> WeekOut:
        """The freelancer accepts the dispute: its amount is refunded to the client."""
        week = parse_monday(monday, "monday")
        return week_out(escrow.hourly.accept_week_dispute(contract_id, week, request_key=request_key))

    @post(
        "/{contract_id:str}/weeks/{monday:str}/dispute/contest",
        operation_id="contestWeekDispute",
        sync_to_thread=True,
        status_code=200,
    )
    @idempotent
    def contest_dispute(
        self,
        request: Request[Any, Any, Any],
        escrow: NamedDependency[Escrow],
        request_key: NamedDependency[str | None],
        contract_id: FromPath[str],
        monday: FromPath[str],
    ) -> WeekOut:
        """The freelancer contests the dispute before `answer_by`: an operator resolves it."""
        week = parse_monday(monday, "monday")
        return week_out(escrow.hourly.contest_week_dispute(contract_id, week, request_key=request_key))

    @post(
        "/{contract_id:str}/weeks/{monday:str}/dispute/resolve",
        operation_id="resolveWeekDispute",
        sync_to_thread=True,
        status_code=200,
        opt={"roles": ADMIN},
    )
    @idempotent
    def resolve_dispute(
        self,
        request: Request[Any, Any, Any],
        escrow: NamedDependency[Escrow],
        request_key: NamedDependency[str | None],
        contract_id: FromPath[str],
        monday: FromPath[str],
        data: JSONBody[ResolveDispute],
    ) -> WeekOut:
        """An operator (`admin`) splits the dispute: `release` to the freelancer (the fee on
        it only), `refund` to the client; together the disputed amount."""
        week = parse_monday(monday, "monday")
        currency = escrow.hourly.currency_of(contract_id)
        return week_out(
            escrow.hourly.resolve_week_dispute(
                contract_id,
                week,
                release=data.release.minor(currency, field="release"),
                refund=data.refund.minor(currency, field="refund"),
                request_key=request_key,
            )
        )
