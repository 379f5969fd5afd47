"""The schema is made only by the migrations, and the migrations make what the code expects."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from ledger.db.engine import current_revision, head_revision, make_engine, upgrade
from ledger.db.schema import Base
from ledger.errors import DatabaseNotMigrated
from ledger.service import Ledger


def test_the_migrated_schema_matches_the_models(fresh_database_url: str) -> None:
    engine = make_engine(fresh_database_url)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert differences == []


def test_an_unmigrated_database_is_refused_with_a_one_line_error(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/empty.sqlite3"
    with pytest.raises(DatabaseNotMigrated, match=r"is empty \(no migrations applied\).*ledger db upgrade"):
        Ledger.connect(url)
    engine = make_engine(url)
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    engine.dispose()
    Ledger.connect(url).close()


def test_migrations_go_down_to_nothing_and_up_again(tmp_path: object) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/roundtrip.sqlite3")
    upgrade(engine)
    upgrade_then_down(engine)
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    engine.dispose()


def upgrade_then_down(engine: object) -> None:
    from alembic import command

    from ledger.db.engine import alembic_config

    config = alembic_config()
    with engine.begin() as connection:  # type: ignore[attr-defined]
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    assert current_revision(engine) is None  # type: ignore[arg-type]
