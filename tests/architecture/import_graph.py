"""The package's import graph as grimp (import-linter's graph library) sees it, and its circles.

Circles are counted with `TYPE_CHECKING` imports left out and each module's implicit
imports of its parent packages' `__init__` put in: importing `ledger.fees.rule` runs
`ledger/__init__.py` and `ledger/fees/__init__.py` first, so a package that imported
its own modules would close a circle through them.

    .venv/bin/python -m tests.architecture.import_graph    # modules, and those in circles
"""

from __future__ import annotations

import grimp

PACKAGE = "ledger"


def import_graph() -> dict[str, set[str]]:
    """Each module of the package and the package modules it imports, parents included."""
    graph = grimp.build_graph(PACKAGE, exclude_type_checking_imports=True)
    modules = {m for m in graph.modules if m == PACKAGE or m.startswith(PACKAGE + ".")}
    edges: dict[str, set[str]] = {}
    for module in modules:
        imported = graph.find_modules_directly_imported_by(module) & modules
        parents = {module.rsplit(".", depth)[0] for depth in range(1, module.count(".") + 1)}
        edges[module] = (imported | parents) - {module}
    return edges


def modules_in_circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    circles.append(sorted(component))
    return circles


def main() -> None:
    edges = import_graph()
    circles = modules_in_circles(edges)
    print(f"{len(edges)} modules, {sum(len(c) for c in circles)} in import circles")
    for circle in circles:
        print("circle: " + ", ".join(circle))


if __name__ == "__main__":
    main()
