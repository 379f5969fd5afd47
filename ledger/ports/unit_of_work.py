"""The unit-of-work port: what use cases need of persistence.

Use cases take a `UnitOfWork` and call its stores; `ledger.db` implements it over
SQLAlchemy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ledger.db.unit_of_work import UnitOfWork as UnitOfWork
else:
    UnitOfWork = object  # the store Protocols replace this alias
