"""Every module is in exactly one layer of the import contracts (pyproject.toml
`[tool.importlinter]`), so a new module cannot slip past them unchecked; packages that
are in no layer themselves are docstrings only."""

from __future__ import annotations

import tomllib
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[2]
#: The contracts whose source modules are a layer, and the layers' names.
LAYER_CONTRACTS = {"domain": "domain", "ports": "ports", "use-cases": "use cases", "adapters": "adapters"}


def contracts() -> dict[str, dict[str, object]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {contract["id"]: contract for contract in config["contracts"]}


def layers_of(graph: grimp.ImportGraph) -> dict[str, list[str]]:
    """module -> the layers it is in (a listed package brings its modules, except in
    the domain contract, which names single modules)."""
    found: dict[str, list[str]] = {}
    for contract_id, layer in LAYER_CONTRACTS.items():
        contract = contracts()[contract_id]
        as_packages = contract.get("as_packages", True)
        for name in contract["source_modules"]:
            members = {name} | (graph.find_descendants(name) if as_packages else set())
            for module in members:
                found.setdefault(module, []).append(layer)
    entry = contracts()["entry-points"]["layers"]
    for line in entry:
        for name in str(line).split("|"):
            name = name.strip()
            layer = "composition root" if name in ("ledger.bootstrap", "ledger.config") else "entry points"
            for module in {name} | graph.find_descendants(name):
                found.setdefault(module, []).append(layer)
    return found


def test_every_module_is_in_exactly_one_layer() -> None:
    graph = grimp.build_graph("ledger", exclude_type_checking_imports=True)
    found = layers_of(graph)
    modules = {m for m in graph.modules if m.startswith("ledger")}
    unplaced = sorted(
        m for m in modules - set(found) if graph.find_children(m) == set() or graph.find_modules_directly_imported_by(m)
    )
    assert unplaced == []
    assert {m: layers for m, layers in found.items() if len(layers) > 1} == {}


def test_the_packages_outside_the_layers_import_nothing() -> None:
    graph = grimp.build_graph("ledger", exclude_type_checking_imports=True)
    found = layers_of(graph)
    packages = sorted(m for m in graph.modules if m.startswith("ledger") and m not in found)
    assert packages  # ledger, ledger.escrow, ledger.fees, ledger.invoices: docstrings (ledger: lazy names)
    assert {
        p: graph.find_modules_directly_imported_by(p) for p in packages if graph.find_modules_directly_imported_by(p)
    } == {}
