"""The escrow services: the escrow use cases as the API, the CLI and the worker call them.

One service per use-case family (contracts, funding, approvals, refunds, payouts,
chargebacks, payment orders, provider events, reads), each over one ledger and one
payment gateway; `ledger.escrow.service.Escrow` bundles them. Each method runs one
use case in its own retryable transaction, and a use case that needs the provider
has its payment orders sent once it has committed (`transactions.py`).
"""
