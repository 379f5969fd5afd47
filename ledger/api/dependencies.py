"""What the handlers and the idempotency records are given (Litestar's `Provide`),
registered on the app by `create_app`.

- `book` (`Ledger`), `escrow` (`Escrow`), `finance` (`Finance`): the services.
- `idempotency_keys` (`IdempotencyKeys`): for `@idempotent`.
- `stripe_webhook_secret` (`str | None`): for the Stripe webhook.
- `request_key` (`str | None`): the request's Idempotency-Key scoped to its API key.
- `page` (`PageRequest`): `limit` and `starting_after` of a list route.
"""

from __future__ import annotations

from litestar.di import Provide

from ledger.api.idempotent import KEYS_DEPENDENCY, REQUEST_KEY_DEPENDENCY, IdempotencyKeys, scoped_request_key
from ledger.api.pagination import page_request
from ledger.bootstrap import Services
from ledger.escrow.service import Escrow
from ledger.invoices.service import Finance
from ledger.service import Ledger


def app_dependencies(
    services: Services, keys: IdempotencyKeys, stripe_webhook_secret: str | None
) -> dict[str, Provide]:
    """The app-level dependencies over `services`."""

    def book() -> Ledger:
        return services.book

    def escrow() -> Escrow:
        return services.escrow

    def finance() -> Finance:
        return services.finance

    def idempotency_keys() -> IdempotencyKeys:
        return keys

    def webhook_secret() -> str | None:
        return stripe_webhook_secret

    return {
        "book": Provide(book, sync_to_thread=False, use_cache=True),
        "escrow": Provide(escrow, sync_to_thread=False, use_cache=True),
        "finance": Provide(finance, sync_to_thread=False, use_cache=True),
        KEYS_DEPENDENCY: Provide(idempotency_keys, sync_to_thread=False, use_cache=True),
        "stripe_webhook_secret": Provide(webhook_secret, sync_to_thread=False, use_cache=True),
        REQUEST_KEY_DEPENDENCY: Provide(scoped_request_key, sync_to_thread=False),
        "page": Provide(page_request, sync_to_thread=False),
    }
