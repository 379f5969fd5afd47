"""The import structure: every module imports alone, no import circle, pure modules stay pure.

The layer contracts themselves are import-linter's (pyproject.toml `[tool.importlinter]`,
run by `make lint`); circles are counted in `import_graph.py`.
"""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.architecture.import_graph import import_graph, modules_in_circles


def test_the_counting_finds_a_circle_through_a_package_init() -> None:
    # A package importing its own module, which (like every module) runs the package first.
    edges = {"p": {"p.a"}, "p.a": {"p"}, "p.b": {"p"}}
    assert modules_in_circles(edges) == [["p", "p.a"]]


def test_no_module_is_in_an_import_circle() -> None:
    assert modules_in_circles(import_graph()) == []


def _import_alone(module: str) -> tuple[str, str]:
    done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True)
    return module, done.stderr.strip().splitlines()[-1] if done.returncode else ""


def test_every_module_imports_alone_in_a_fresh_interpreter() -> None:
    modules = sorted(import_graph())
    assert len(modules) > 50
    with ThreadPoolExecutor(max_workers=4) as pool:
        failures = {module: error for module, error in pool.map(_import_alone, modules) if error}
    assert failures == {}


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint('\\n'.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(done.stdout.split())


@pytest.mark.parametrize(
    "module",
    [
        "ledger.fees.rule",
        "ledger.fees.schedule",
        "ledger.money",
        "ledger.escrow.model",
        "ledger.escrow.hourly_calendar",
        "ledger.escrow.timesheet",
    ],
)
def test_a_pure_module_loads_no_sqlalchemy_and_no_service(module: str) -> None:
    loaded = _loaded_after(f"import {module}")
    assert module in loaded
    assert not {m for m in loaded if m == "sqlalchemy" or m.startswith("sqlalchemy.")}
    assert not {m for m in loaded if m.startswith(("ledger.db", "ledger.service", "ledger.escrow.service"))}


def test_the_public_names_still_load_from_the_package() -> None:
    loaded = _loaded_after(
        "from ledger import Ledger, AccountSpec, AccountType, EntryRequest, UnitOfWork, credit, debit\n"
        "assert Ledger.__module__ == 'ledger.service' and EntryRequest.__module__ == 'ledger.journal'"
    )
    assert "ledger.service" in loaded


def test_an_unknown_public_name_is_an_attribute_error() -> None:
    import ledger

    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = ledger.Nope
