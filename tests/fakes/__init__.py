"""An in-memory implementation of the unit-of-work port (`ledger.ports`), for fast tests.

`tests.fakes.memory.MemoryDatabase` implements `Transactions` over plain Python state:
each transaction works on a copy that is committed whole when the work returns and
thrown away if it raises. Its stores answer as the database stores of `ledger.db` do;
`tests/contracts` runs the same cases against both to keep them so.
"""
