"""The history of states with their actors (`state_changes`), appended by the stores in
the transaction that changes a state, and read back for the API and the audit."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, String, bindparam, insert, select

from ledger.actors import StateChange, current_actor
from ledger.db.schema import UTCDateTime, state_changes

_LAST_STATE = (
    select(state_changes.c.state)
    .where(state_changes.c.subject == bindparam("subject"), state_changes.c.subject_id == bindparam("subject_id"))
    .order_by(state_changes.c.id.desc())
    .limit(1)
    .scalar_subquery()
)
#: One row, unless the subject's last recorded state is already this one (a save that
#: changed a deadline, not the state): one statement, however the subject was saved.
_APPEND = insert(state_changes).from_select(
    ["subject", "subject_id", "state", "actor", "at"],
    select(
        bindparam("subject", type_=String),
        bindparam("subject_id", type_=String),
        bindparam("state", type_=String),
        bindparam("actor", type_=String),
        bindparam("at", type_=UTCDateTime()),
    ).where(bindparam("state", type_=String).is_distinct_from(_LAST_STATE)),
)


def record(connection: Connection, subject: str, subject_id: str, state: str, at: datetime) -> None:
    """Append that `subject_id` entered `state` at `at`, by the current actor, unless it
    is the state last recorded for it."""
    values = {"subject": subject, "subject_id": subject_id, "state": state, "actor": current_actor(), "at": at}
    connection.execute(_APPEND, values)


def history(connection: Connection, subject: str, subject_id: str) -> list[StateChange]:
    """The states `subject_id` entered, oldest first."""
    rows = connection.execute(
        select(state_changes)
        .where(state_changes.c.subject == subject, state_changes.c.subject_id == subject_id)
        .order_by(state_changes.c.id)
    )
    return [StateChange(r.subject, r.subject_id, r.state, r.actor, r.at) for r in rows]
