"""Milestone escrow: money held for a client's milestone until the work is approved,
then released to the freelancer minus the service fee.

The states, events and postings are docs/architecture.md's "Milestone transitions and
timers" and "Money flows":
`model.py` holds the transition table, `milestones.py` the milestone use cases,
`payments.py` releases and refunds, `payouts.py` withdrawals, `timers.py` the
durable clocks fired by `ledger tick`, `chargebacks.py` disputes opened by clients'
banks; `services/` runs them in transactions, one service per use-case family, and
drives the payment gateway between transactions (`service.py` bundles the services
as `Escrow`). Invariants:
- every state transition and its journal entry commit together;
- a milestone's escrow account holds funded - released - refunded, and nothing
  once the milestone is final;
- approval and the review clock racing release exactly once (row locks);
- a payout never exceeds the available balance (the account's floor);
- an open chargeback freezes its milestone: no money moves into or out of it.
"""
