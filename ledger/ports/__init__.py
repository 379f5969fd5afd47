"""Ports: the interfaces use cases need of the outside world, implemented by the adapters.

`unit_of_work.py` is persistence: one transaction and its stores (`ledger.db` implements
it over SQLAlchemy). The payment provider's port is `ledger.gateway`.
"""
