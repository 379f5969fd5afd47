"""Ports: the interfaces use cases need of the outside world, implemented by the adapters.

`unit_of_work.py` is persistence: one transaction and its stores, whose Protocols are in
`accounting.py` (accounts, journal, fees), `escrow.py` (escrow, payment orders) and
`records.py` (documents, API keys and requests); `ledger.db` implements them over
SQLAlchemy. The payment provider's port is `ledger.gateway`.
"""
