"""Streamed response bodies from synchronous iterators that hold a database transaction.

Litestar runs a sync iterator's `next` in a worker thread, but when the client goes
away it stops iterating without closing the iterator, which would leave the
iterator's read transaction (and its pooled connection) open until the garbage
collector found it. `streamed` closes it, in a worker thread and shielded from the
cancellation, whether the body was sent whole or not.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import anyio
import anyio.to_thread


def _next(iterator: Iterator[bytes]) -> bytes | None:
    return next(iterator, None)


async def streamed(iterator: Iterator[bytes]) -> AsyncIterator[bytes]:
    """The chunks of `iterator`, each read in a worker thread; `iterator` is closed at the end."""
    try:
        while True:
            chunk = await anyio.to_thread.run_sync(_next, iterator)
            if chunk is None:
                return
            yield chunk
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(close)
