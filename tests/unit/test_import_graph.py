"""No import cycle anywhere in the package, between any two modules.

The import-linter contracts in pyproject.toml hold the layers and forbid cycles between
siblings (``acyclic_siblings``); a cycle between a package's ``__init__`` and a module
below it is not between siblings, so it is checked here, over the whole module graph
(``TYPE_CHECKING`` imports included: they are imports a reader follows all the same).
"""

from __future__ import annotations

from collections.abc import Iterable

import grimp
import pytest


def cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The import cycles of ``graph``: its strongly connected components of more than
    one module, each sorted (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []
    for root in sorted(graph.modules):
        if root not in index:
            _visit(graph, root, index, low, stack, found)
    return sorted(found)


def _visit(
    graph: grimp.ImportGraph,
    root: str,
    index: dict[str, int],
    low: dict[str, int],
    stack: list[str],
    found: list[list[str]],
) -> None:
    work: list[tuple[str, list[str]]] = [(root, _imported(graph, root))]
    index[root] = low[root] = len(index)
    stack.append(root)
    while work:
        module, pending = work[-1]
        if pending:
            nxt = pending.pop()
            if nxt not in index:
                index[nxt] = low[nxt] = len(index)
                stack.append(nxt)
                work.append((nxt, _imported(graph, nxt)))
            elif nxt in stack:
                low[module] = min(low[module], index[nxt])
            continue
        work.pop()
        if work:
            low[work[-1][0]] = min(low[work[-1][0]], low[module])
        if low[module] == index[module]:
            component = stack[stack.index(module) :]
            del stack[stack.index(module) :]
            if len(component) > 1:
                found.append(sorted(component))


def _imported(graph: grimp.ImportGraph, module: str) -> list[str]:
    return sorted(graph.find_modules_directly_imported_by(module))


def _graph(edges: Iterable[tuple[str, str]]) -> grimp.ImportGraph:
    graph = grimp.ImportGraph()
    for importer, imported in edges:
        graph.add_import(importer=importer, imported=imported)
    return graph


@pytest.mark.parametrize(
    ("edges", "expected"),
    [
        ([("a", "b"), ("b", "c")], []),
        ([("a", "b"), ("b", "a")], [["a", "b"]]),
        ([("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")], [["a", "b", "c"]]),
        ([("p", "p.m"), ("p.m", "p")], [["p", "p.m"]]),  # a package and its own module
        ([("a", "b"), ("b", "a"), ("c", "d"), ("d", "c")], [["a", "b"], ["c", "d"]]),
    ],
)
def test_cycles_are_found(edges: list[tuple[str, str]], expected: list[list[str]]) -> None:
    assert cycles(_graph(edges)) == expected


def test_the_package_has_no_import_cycle() -> None:
    assert cycles(grimp.build_graph("gpufleet")) == []
