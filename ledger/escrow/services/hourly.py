"""Hourly contracts: opening, logging and deleting time, term changes, pauses, the
weeks as they stand, and bonuses. Each write is one transaction under the contract's
lock, bound to its request key so a retried request returns its first result."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import TypeVar

from ledger.escrow import hourly as use
from ledger.escrow import hourly_billing as billing
from ledger.escrow import hourly_disputes as disputes
from ledger.escrow.hourly_calendar import week_end, week_start
from ledger.escrow.model import Contract, Milestone, MilestoneState, SubjectKind, UnknownMilestone
from ledger.escrow.orders import OrderKind
from ledger.escrow.services.transactions import EscrowService
from ledger.escrow.timesheet import Segment
from ledger.ports.unit_of_work import UnitOfWork

T = TypeVar("T")


def _segment_result(segment: Segment) -> dict[str, object]:
    return {
        "segment": segment.id,
        "start": segment.start.isoformat(),
        "end": segment.end.isoformat(),
        "memo": segment.memo,
        "manual": segment.manual,
    }


def _stored_segment(stored: Mapping[str, object]) -> Segment:
    return Segment(
        start=datetime.fromisoformat(str(stored["start"])),
        end=datetime.fromisoformat(str(stored["end"])),
        memo=str(stored["memo"]),
        manual=bool(stored["manual"]),
        id=str(stored["segment"]),
    )


@dataclass(frozen=True)
class HourlyBonus:
    """A bonus on an hourly contract as it stands.

    Attributes:
        subject: its escrow subject (`funding` while charged, `released` once paid,
            `draft` with a failure reason when the charge failed).
        order_id: the charge's payment order; payment_id: its payment, once released.
    """

    subject: Milestone
    currency: str
    order_id: str | None
    payment_id: str | None

    @property
    def state(self) -> str:
        return {MilestoneState.RELEASED: "released", MilestoneState.DRAFT: "failed"}.get(self.subject.state, "charging")


class HourlyService(EscrowService):
    """Hourly contracts: time, term changes and pauses, the weeks, and bonuses. The weekly
    charge, review and release run from the timers (`ledger tick`)."""

    def _keyed(
        self,
        request_key: str | None,
        operation: str,
        request: dict[str, object],
        work: Callable[[UnitOfWork], T],
        replay: Callable[[UnitOfWork, Mapping[str, object]], T],
        result: Callable[[T], dict[str, object]],
    ) -> T:
        def run(uow: UnitOfWork) -> T:
            if request_key is not None:
                stored = uow.orders.bind_request_key(request_key, operation, request)
                if stored is not None:
                    return replay(uow, stored)
            done = work(uow)
            if request_key is not None:
                uow.orders.store_result(request_key, result(done))
            return done

        return self.book.transaction(run)

    def _contract_op(
        self,
        request_key: str | None,
        operation: str,
        request: dict[str, object],
        work: Callable[[UnitOfWork], Contract],
    ) -> Contract:
        contract_id = str(request["contract"])
        return self._keyed(
            request_key,
            operation,
            request,
            work,
            lambda uow, _: uow.escrow.contract(contract_id),
            lambda contract: {"contract": contract.id},
        )

    def open_contract(
        self,
        *,
        client_id: str,
        freelancer_id: str,
        currency: str,
        title: str,
        hourly_rate: int,
        weekly_limit_hours: int,
        manual_time_allowed: bool,
        request_key: str | None = None,
    ) -> Contract:
        request: dict[str, object] = {
            "client": client_id,
            "freelancer": freelancer_id,
            "currency": currency,
            "title": title,
            "hourly_rate": hourly_rate,
            "weekly_limit_hours": weekly_limit_hours,
            "manual_time_allowed": manual_time_allowed,
        }
        return self._keyed(
            request_key,
            "open_hourly_contract",
            request,
            lambda uow: use.open_hourly_contract(
                uow,
                client_id=client_id,
                freelancer_id=freelancer_id,
                currency=currency,
                title=title,
                hourly_rate=hourly_rate,
                weekly_limit_hours=weekly_limit_hours,
                manual_time_allowed=manual_time_allowed,
            ),
            lambda uow, stored: uow.escrow.contract(str(stored["contract"])),
            lambda contract: {"contract": contract.id},
        )

    def log_segment(self, contract_id: str, segment: Segment, *, request_key: str | None = None) -> Segment:
        request: dict[str, object] = {"contract": contract_id, **_segment_result(segment)}
        return self._keyed(
            request_key,
            "log_segment",
            request,
            lambda uow: use.log_segment(uow, contract_id, segment),
            lambda _, stored: _stored_segment(stored),
            _segment_result,
        )

    def delete_segment(self, contract_id: str, segment_id: str, *, request_key: str | None = None) -> Segment:
        return self._keyed(
            request_key,
            "delete_segment",
            {"contract": contract_id, "segment": segment_id},
            lambda uow: use.delete_segment(uow, contract_id, segment_id),
            lambda _, stored: _stored_segment(stored),
            _segment_result,
        )

    def change_terms(
        self,
        contract_id: str,
        *,
        weekly_limit_hours: int | None = None,
        hourly_rate: int | None = None,
        request_key: str | None = None,
    ) -> Contract:
        return self._contract_op(
            request_key,
            "change_terms",
            {"contract": contract_id, "weekly_limit_hours": weekly_limit_hours, "hourly_rate": hourly_rate},
            lambda uow: use.change_terms(
                uow, contract_id, weekly_limit_hours=weekly_limit_hours, hourly_rate=hourly_rate
            ),
        )

    def pause(self, contract_id: str, *, request_key: str | None = None) -> Contract:
        return self._contract_op(
            request_key, "pause", {"contract": contract_id}, lambda uow: use.set_paused(uow, contract_id, paused=True)
        )

    def resume(self, contract_id: str, *, request_key: str | None = None) -> Contract:
        return self._contract_op(
            request_key,
            "resume",
            {"contract": contract_id},
            lambda uow: use.set_paused(uow, contract_id, paused=False),
        )

    def pay_bonus(
        self, contract_id: str, *, amount: int, memo: str = "", request_key: str | None = None
    ) -> HourlyBonus:
        """Charge the client a bonus for the freelancer now; released when the charge
        succeeds (within this request when the provider answers at once). The same
        request key again reports the bonus it started, as it stands now."""
        self._gateway()
        request: dict[str, object] = {"contract": contract_id, "amount": amount, "memo": memo}

        def work(uow: UnitOfWork) -> str:
            if request_key is not None:
                stored = uow.orders.bind_request_key(request_key, "hourly_bonus", request)
                if stored is not None:
                    return str(stored["bonus"])
            subject, _ = billing.pay_bonus(uow, contract_id, amount=amount, memo=memo)
            if request_key is not None:
                uow.orders.store_result(request_key, {"bonus": subject.id})
            return subject.id

        return self.bonus(self._write(work))

    def bonus(self, bonus_id: str) -> HourlyBonus:
        def read(uow: UnitOfWork) -> HourlyBonus:
            subject, contract = uow.escrow.milestone_and_contract(bonus_id)
            if subject.kind is not SubjectKind.BONUS:
                raise UnknownMilestone(f"no hourly bonus {bonus_id}", milestone_id=bonus_id)
            orders = uow.orders.of_milestone(bonus_id, kinds=(OrderKind.FUND,))
            payments = uow.escrow.payments_of(bonus_id)
            return HourlyBonus(
                subject,
                contract.currency,
                orders[-1].id if orders else None,
                payments[0].id if payments else None,
            )

        return self.book.transaction(read, read_only=True)

    def _week_op(
        self, request_key: str | None, operation: str, request: dict[str, object], work: Callable[[UnitOfWork], object]
    ) -> use.WeekView:
        """A change of a week bound to its request key, its payment orders (a dispute's
        refund) sent after commit; the answer is the week as it stands then."""
        contract_id, monday = str(request["contract"]), date.fromisoformat(str(request["week"]))

        def run(uow: UnitOfWork) -> None:
            if request_key is not None and uow.orders.bind_request_key(request_key, operation, request) is not None:
                return
            work(uow)
            if request_key is not None:
                uow.orders.store_result(request_key, {"week": monday.isoformat()})

        self._write(run)
        return self.week(contract_id, monday)

    def dispute_week(
        self, contract_id: str, monday: date, *, minutes: int, reason: str, request_key: str | None = None
    ) -> use.WeekView:
        """The client disputes the week's last `minutes` billable minutes until its review ends."""
        request: dict[str, object] = {
            "contract": contract_id,
            "week": monday.isoformat(),
            "minutes": minutes,
            "reason": reason,
        }
        return self._week_op(
            request_key,
            "dispute_week",
            request,
            lambda uow: disputes.open_dispute(uow, contract_id, monday, minutes=minutes, reason=reason),
        )

    def accept_week_dispute(self, contract_id: str, monday: date, *, request_key: str | None = None) -> use.WeekView:
        request: dict[str, object] = {"contract": contract_id, "week": monday.isoformat()}
        return self._week_op(
            request_key, "accept_week_dispute", request, lambda uow: disputes.accept(uow, contract_id, monday)
        )

    def contest_week_dispute(self, contract_id: str, monday: date, *, request_key: str | None = None) -> use.WeekView:
        request: dict[str, object] = {"contract": contract_id, "week": monday.isoformat()}
        return self._week_op(
            request_key, "contest_week_dispute", request, lambda uow: disputes.contest(uow, contract_id, monday)
        )

    def resolve_week_dispute(
        self, contract_id: str, monday: date, *, release: int, refund: int, request_key: str | None = None
    ) -> use.WeekView:
        request: dict[str, object] = {
            "contract": contract_id,
            "week": monday.isoformat(),
            "release": release,
            "refund": refund,
        }
        return self._week_op(
            request_key,
            "resolve_week_dispute",
            request,
            lambda uow: disputes.resolve(uow, contract_id, monday, release_amount=release, refund_amount=refund),
        )

    # --- reads -----------------------------------------------------------------

    def currency_of(self, contract_id: str) -> str:
        """The hourly contract's currency (`WrongContractType` for a fixed-price one)."""
        return self.book.transaction(lambda uow: use.hourly_contract(uow, contract_id).currency, read_only=True)

    def segments(
        self, contract_id: str, *, week: date | None = None, after_id: int | None = None, limit: int | None = None
    ) -> list[Segment]:
        """The contract's segments (of one week, when given), in the order they were logged."""

        def read(uow: UnitOfWork) -> list[Segment]:
            use.hourly_contract(uow, contract_id)
            start = None if week is None else week_start(week)
            end = None if week is None else week_end(week)
            return uow.escrow.segments_of(contract_id, start=start, end=end, after_id=after_id, limit=limit)

        return self.book.transaction(read, read_only=True)

    def week(self, contract_id: str, monday: date) -> use.WeekView:
        return self.book.transaction(lambda uow: use.week_view(uow, contract_id, monday), read_only=True)

    def weeks(self, contract_id: str, *, before: date | None = None, limit: int | None = None) -> list[use.WeekView]:
        return self.book.transaction(
            lambda uow: use.weeks(uow, contract_id, before=before, limit=limit), read_only=True
        )
