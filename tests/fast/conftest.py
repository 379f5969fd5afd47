"""The fast tier: use cases on the in-memory fake of the unit-of-work port, no database.

    PYTHONPATH=$PWD python -m pytest -q tests/fast tests/unit

runs in a few seconds. That the fake answers as the database stores do is checked by
tests/contracts, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import pytest

from ledger.clock import FixedClock
from ledger.service import Ledger
from tests.fakes.memory import MemoryDatabase


@pytest.fixture
def book(clock: FixedClock) -> Ledger:
    """A ledger over an empty in-memory database, with a clock the test can move."""
    return Ledger(MemoryDatabase(clock=clock))
