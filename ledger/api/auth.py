"""Authentication and roles: `Authorization: Bearer <api key>`.

Each route names the roles that may use it in its `opt["roles"]` (admin may use
every route); routes without roles are open. The key's record is left in the
request's state (`api_key`) for what follows: the Idempotency-Key records are per API key;
and its id is the request's actor (`ledger.actors`): what the request books names it.
"""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from ledger.actors import set_actor
from ledger.api.keys import authenticate
from ledger.service import Ledger

MARKETPLACE = ("marketplace",)
ADMIN = ("admin",)
FINANCE = ("finance",)
READERS = ("finance", "auditor")


class RequireRole:
    """Guard: authenticate the bearer key and check its role against the route's roles.

    Attributes:
        book: the ledger that holds the API keys.
    """

    def __init__(self, book: Ledger) -> None:
        self.book = book

    async def __call__(self, connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
        # A coroutine, not a function Litestar would run in a thread of its own: the
        # actor it names (`ledger.actors`) must be set in the request's own context,
        # which the handler's thread copies.
        roles = handler.opt.get("roles")
        if roles is None:
            return
        header = connection.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise NotAuthorizedException("an API key is required: Authorization: Bearer <key>")
        # One statement, read as it stands: a revoked key is refused at once.
        api_key = await anyio.to_thread.run_sync(
            lambda: self.book.autocommit(lambda uow: authenticate(uow, key.strip()), read_only=True)
        )
        if api_key is None:
            raise NotAuthorizedException("unknown or revoked API key")
        set_actor(api_key.id)  # a refused role is logged with the key that tried
        if api_key.role != "admin" and api_key.role not in roles:
            raise PermissionDeniedException(f"the {api_key.role} role may not use this route")
        connection.state.api_key = api_key
