"""Entry kinds are stored with every entry: a member's value never changes."""

from __future__ import annotations

from ledger.kinds import EntryKind

STORED = {
    "escrow.fund",
    "escrow.fund_bonus",
    "escrow.release",
    "escrow.refund",
    "escrow.available",
    "escrow.payment_refund",
    "escrow.chargeback",
    "escrow.advance",
    "escrow.recovery",
    "escrow.write_off",
    "psp.fee",
    "refund.settled",
    "payout.request",
    "payout.paid",
    "payout.failed",
    "payout.reversed",
    "dispute.funds_withdrawn",
    "dispute.funds_reinstated",
    "dispute.fee",
    "dispute.fee_returned",
    "dispute.refund_settled",
    "dispute.recovery",
    "dispute.lost",
    "dispute.receivable_reopened",
}


def test_every_entry_kind_is_the_string_entries_already_carry() -> None:
    assert {kind.value for kind in EntryKind} == STORED


def test_an_entry_kind_is_its_stored_string() -> None:
    assert EntryKind.FUND == "escrow.fund"
    assert f"{EntryKind.RELEASE}:pay_1" == "escrow.release:pay_1"
    assert isinstance(EntryKind.PAYOUT_PAID, str)
