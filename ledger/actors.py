"""Who did what: the actor recorded on every journal entry, payment order and state change.

An actor is the id of the API key that sent a request (`key_…`), or the name of a
process acting on its own: `cli` (an operator's command), `worker` (`ledger worker`:
timers and payment orders), `simulate` (`ledger simulate`), `demo` (`ledger demo`),
`provider` (the payment provider's webhooks), or `system` (the library called in-process without naming one, as tests do). Entries
booked before actors were recorded carry `unrecorded`.

The actor is ambient, not an argument: it is set once where work enters the process
(the API's authentication guard, the CLI's `main`, the worker's round) and read where
rows are written, so no use case passes it along. It is a `ContextVar`, so each request,
thread and task has its own; threads the API starts for a request copy the request's
context. The actor is never part of an idempotency fingerprint: the same result may be
booked first by a request and then by the worker, and is the same result.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime

CLI = "cli"
WORKER = "worker"
SIMULATE = "simulate"
DEMO = "demo"
#: The payment provider's webhooks: events the provider sent on its own.
PROVIDER = "provider"
SYSTEM = "system"
#: Entries booked before actors were recorded (migration 0017).
UNRECORDED = "unrecorded"
#: The actors that are processes, not API keys.
PROCESS_ACTORS = frozenset({CLI, WORKER, SIMULATE, DEMO, PROVIDER, SYSTEM, UNRECORDED})
#: An API key's id, as `ledger.api.keys.create_key` makes it.
API_KEY_ACTOR = re.compile(r"key_[0-9a-f]{12}")

_ACTOR: ContextVar[str] = ContextVar("ledger_actor", default=SYSTEM)


@dataclass(frozen=True)
class StateChange:
    """A state a subject (a milestone, a payment order...) entered: who moved it there, and when."""

    subject: str
    subject_id: str
    state: str
    actor: str
    at: datetime


def current_actor() -> str:
    """Who is acting now (`system` when nobody said)."""
    return _ACTOR.get()


def is_actor(name: str) -> bool:
    """Whether `name` is a process actor or has the form of an API key's id."""
    return name in PROCESS_ACTORS or API_KEY_ACTOR.fullmatch(name) is not None


def set_actor(name: str) -> None:
    """Name the actor for the rest of this context (a process's entry point, a request)."""
    if not is_actor(name):
        raise ValueError(f"{name!r} is not an actor: an API key's id or one of {', '.join(sorted(PROCESS_ACTORS))}")
    _ACTOR.set(name)


@contextmanager
def acting_as(name: str) -> Iterator[None]:
    """Name the actor for a block, then restore the one before."""
    if not is_actor(name):
        raise ValueError(f"{name!r} is not an actor")
    token = _ACTOR.set(name)
    try:
        yield
    finally:
        _ACTOR.reset(token)
