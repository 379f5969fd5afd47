"""Entry kinds: what a journal entry records.

The value is stored with the entry (`entries.kind`) and read by the audit checks,
reconciliation and statements, so a value never changes once entries carry it. A
reversal's kind is its original's with `.reversal` appended (`escrow.fund.reversal`).
`EntryKind` is a `StrEnum`: a member is the string it stores, and compares equal to it.
"""

from __future__ import annotations

from enum import StrEnum, unique


@unique
class EntryKind(StrEnum):
    """The kinds of entry the ledger's own use cases post."""

    #: a milestone funded: PSP account -> the milestone's escrow account (and the client's processing fee)
    FUND = "escrow.fund"
    #: a bonus charged on approval, beyond what the milestone held
    FUND_BONUS = "escrow.fund_bonus"
    #: escrow -> the freelancer's pending balance, minus the service fee
    RELEASE = "escrow.release"
    #: held money returned to the client: escrow -> refunds in transit
    REFUND = "escrow.refund"
    #: a payment's security period is over: pending -> available
    AVAILABLE = "escrow.available"
    #: the freelancer refunds (part of) a released payment: their balance -> refunds in transit
    PAYMENT_REFUND = "escrow.payment_refund"
    #: a chargeback recovered from the money still held in escrow
    CHARGEBACK = "escrow.chargeback"
    #: protected hourly work advanced at review end: receivables -> the week's escrow
    ADVANCE = "escrow.advance"
    #: an advanced week's charge succeeded: the week's escrow -> receivables (and a write-off undone)
    RECOVERY = "escrow.recovery"
    #: an advance not recovered 30 days after the week closed: hourly protection expense -> receivables
    WRITE_OFF = "escrow.write_off"
    #: what the provider kept of a payment: PSP account -> expenses
    PROCESSING_FEE = "psp.fee"
    #: the provider refunded: refunds in transit -> PSP account
    REFUND_SETTLED = "refund.settled"
    #: a withdrawal: available -> payouts in transit
    PAYOUT_REQUEST = "payout.request"
    #: the provider paid a payout: payouts in transit -> PSP account
    PAYOUT_PAID = "payout.paid"
    #: the provider failed a payout: payouts in transit -> available again
    PAYOUT_FAILED = "payout.failed"
    #: the provider reversed (part of) a paid payout's transfer: PSP account -> available
    PAYOUT_REVERSED = "payout.reversed"
    #: the provider withdrew disputed money from our balance
    DISPUTE_FUNDS_WITHDRAWN = "dispute.funds_withdrawn"
    #: the provider reinstated disputed money (a dispute won)
    DISPUTE_FUNDS_REINSTATED = "dispute.funds_reinstated"
    #: the provider's dispute fee
    DISPUTE_FEE = "dispute.fee"
    #: a dispute fee returned
    DISPUTE_FEE_RETURNED = "dispute.fee_returned"
    #: a refund the provider would not make, owed to the client in transit, settled by the chargeback
    DISPUTE_REFUND_SETTLED = "dispute.refund_settled"
    #: a chargeback recovered from the freelancer's balances (the service fee returned, the rest a loss)
    DISPUTE_RECOVERY = "dispute.recovery"
    #: what a lost chargeback could not recover: the platform's loss
    DISPUTE_LOST = "dispute.lost"
    #: a lost chargeback took back a week's charge that had recovered an advance: what no
    #: balance covers of that advance is owed again (disputed -> receivables, or hourly
    #: protection for what had been written off)
    RECEIVABLE_REOPENED = "dispute.receivable_reopened"
