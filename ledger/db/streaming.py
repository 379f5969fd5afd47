"""Reads that scan the whole journal: rows come through a server-side cursor.

The audit reads every account, fee event and document once; fetched in batches of
`STREAM_ROWS`, its memory does not grow with the database.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection, Executable

STREAM_ROWS = 1000


def stream(connection: Connection, statement: Executable) -> Iterator[Any]:
    """The rows of `statement`, fetched `STREAM_ROWS` at a time."""
    yield from connection.execution_options(yield_per=STREAM_ROWS).execute(statement)
