"""The service fee: a lifetime, per-client sliding fee on what freelancers bill.

The fee on each payment released to a freelancer depends on what that freelancer
has billed that client before, across all their contracts, per currency, by a
tiered schedule (`schedule.py`, the classic 20/10/5 in force by default). The
arithmetic is exact and path-independent (`rule.py`); the use cases (`billing.py`)
keep lifetime billings per pair and record every charge and refund as a fee event
with its lifetime before and after and its schedule, so an auditor can recompute
each one. A charge uses the schedule in force at its time; a refund names the
charge it refunds and uses that charge's schedule. Invariants:
- a pair's fee events form an unbroken chain of lifetime billings;
- each event's fee is R(F(after)) - R(F(before)) under the schedule it names, so a
  pair billed under one schedule has paid R(F(net lifetime billings)) in all;
- two concurrent payments for one pair never read the same lifetime total (the
  pair's row is locked for the rest of the transaction).
"""
