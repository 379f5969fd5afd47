"""Pages of a list route: `limit` and `starting_after` in, `has_more` and `next_cursor` out.

A list route takes a `PageRequest` (the `page` dependency), asks for `page.fetch`
rows (one more than it shows, so that it knows whether another page follows) and
builds its response with `page.listing`. The cursor is the last shown row's id (or,
for documents, its number); the next page starts after it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, TypeVar

from litestar.params import QueryParameter

from ledger.errors import InvalidRequest

Row = TypeVar("Row")
Item = TypeVar("Item")
Listing = TypeVar("Listing")

MAX_CURSOR = 2**63 - 1  # ids are BIGINT

Limit = Annotated[int, QueryParameter(ge=1, le=100, description="page size")]
StartingAfter = Annotated[str | None, QueryParameter(description="the `next_cursor` of the previous page")]


@dataclass(frozen=True)
class PageRequest:
    """What page of a list the client asked for.

    Attributes:
        limit: how many rows to show (1-100).
        starting_after: the previous page's `next_cursor`, or None for the first page.
    """

    limit: int
    starting_after: str | None

    @property
    def fetch(self) -> int:
        """How many rows to read: one more than shown tells whether another page follows."""
        return self.limit + 1

    def after_id(self) -> int | None:
        """The cursor as a row id; anything but a cursor from a previous page is refused."""
        value = self.starting_after
        if value is None:
            return None
        if not (value.isascii() and value.isdigit()) or int(value) > MAX_CURSOR:
            raise InvalidRequest("starting_after is a cursor from a previous page", field="starting_after")
        return int(value)

    def listing(
        self,
        make: Callable[[list[Item], bool, str | None], Listing],
        rows: Sequence[Row],
        show: Callable[[Row], Item],
        cursor: Callable[[Row], object],
    ) -> Listing:
        """The response: the first `limit` rows shown, whether more follow, and the cursor
        (`cursor` of the last row shown) to ask for them."""
        shown = rows[: self.limit]
        more = len(rows) > self.limit
        return make([show(row) for row in shown], more, str(cursor(shown[-1])) if more else None)


def page_request(limit: Limit = 20, starting_after: StartingAfter = None) -> PageRequest:
    """The `page` dependency of list routes."""
    return PageRequest(limit, starting_after)
