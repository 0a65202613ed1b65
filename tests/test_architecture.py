"""The import graph of `app/`: acyclic, and the domains are leaves where the flow says so.

The graph is read from the source with `ast`, without importing anything. Every `import` and
`from … import …` statement counts wherever it stands: at module level, inside a function
(a deferred import is still a dependency), and under `if TYPE_CHECKING:`. `from a.b import c`
is an edge to the module `a.b.c` when that is a module, else to `a.b`. The import of a package
that Python runs implicitly before a submodule (`app/store/__init__.py` before `app/store/base`)
is not an edge: a package importing its own submodules is how packages are built.

The rules, as the flow goes (GHL → outbound → Cast; the gateway → inbound → GHL):
- the outbound domain imports neither `app.locations` (the settings page) nor `app.inbound`;
  a location's Cast account comes from `app.cast.accounts`, and who texted whom reaches the
  inbound side through a hook (`OutboundWorker(sent_to=...)`);
- the inbound domain imports neither `app.outbound` nor `app.locations`;
- `app.cast` (the client, pacing, accounts: what both paths use) imports no other domain;
- apart from their HTTP edge (`endpoints.py`, which reaches the composition root through
  `app.deps`), those domains do not reach the forbidden ones indirectly either;
- `app.kit` (plumbing) imports no domain, nor the composition root or the HTTP edge;
- nothing in `app` imports the test suite or the benchmarks.
"""

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[1] / "app"

type Graph = dict[str, set[str]]

DOMAINS = ("admin", "cast", "inbound", "locations", "oauth", "optouts", "outbound")
FORBIDDEN = {
    "app.outbound": ("app.locations", "app.inbound"),
    "app.inbound": ("app.outbound", "app.locations"),
    "app.cast": tuple(f"app.{d}" for d in DOMAINS if d != "cast"),
}
HTTP_EDGE = "endpoints"


def _module_name(path: Path) -> str:
    parts = path.relative_to(APP.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(tree: ast.Module, module: str, is_package: bool) -> Iterator[str]:
    """Every module name `tree` imports, relative imports resolved."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".")
                if not is_package:
                    package = package[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, base] if base else package)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def import_graph() -> tuple[Graph, set[str]]:
    """The edges between `app` modules, and every top-level package `app` imports."""
    sources = {_module_name(path): path for path in APP.rglob("*.py")}
    graph: Graph = {}
    external: set[str] = set()
    for module, path in sources.items():
        names = set(_imported(ast.parse(path.read_text()), module, path.name == "__init__.py"))
        graph[module] = {name for name in names if name in sources and name != module}
        external |= {name.split(".")[0] for name in names}
    return graph, external


def find_cycle(graph: Graph) -> list[str] | None:
    """One import cycle (its modules in order, the first repeated at the end), or None."""
    done: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(module: str) -> list[str] | None:
        path.append(module)
        on_path.add(module)
        for target in sorted(graph[module]):
            if target in on_path:
                return [*path[path.index(target) :], target]
            if target not in done and (cycle := visit(target)) is not None:
                return cycle
        on_path.discard(path.pop())
        done.add(module)
        return None

    for module in sorted(graph):
        if module not in done and (cycle := visit(module)) is not None:
            return cycle
    return None


def reachable(graph: Graph, start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for target in graph[todo.pop()] - seen:
            seen.add(target)
            todo.append(target)
    return seen


def _inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


@pytest.fixture(scope="module")
def graph() -> Graph:
    return import_graph()[0]


def test_the_graph_is_read_from_every_module_of_app(graph: Graph):
    assert {"app.main", "app.composition", "app.outbound.worker", "app.cli"} <= graph.keys()
    assert "app.composition" in graph["app.main"]
    assert "app.sandbox" in graph["app.cli"]  # a function-level import counts


def test_find_cycle_names_a_cycle_and_only_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_app_has_no_import_cycle(graph: Graph):
    assert find_cycle(graph) is None


@pytest.mark.parametrize("domain", sorted(FORBIDDEN))
def test_a_leaf_domain_imports_none_of_the_domains_it_must_not(graph: Graph, domain: str):
    forbidden = FORBIDDEN[domain]
    found = {
        (module, target)
        for module, targets in graph.items()
        if _inside(module, domain)
        for target in targets
        if any(_inside(target, other) for other in forbidden)
    }
    assert found == set()


@pytest.mark.parametrize("domain", sorted(FORBIDDEN))
def test_a_leaf_domain_does_not_reach_them_through_another_module(graph: Graph, domain: str):
    forbidden = FORBIDDEN[domain]
    found = {
        (module, target)
        for module in graph
        if _inside(module, domain) and module.rsplit(".", 1)[-1] != HTTP_EDGE
        for target in reachable(graph, module)
        if any(_inside(target, other) for other in forbidden)
    }
    assert found == set()


def test_the_kit_imports_no_domain_nor_the_composition_root(graph: Graph):
    """Plumbing in `app.kit` knows no business rule and no wiring."""
    kit = [module for module in graph if _inside(module, "app.kit")]
    assert kit
    forbidden = [f"app.{domain}" for domain in DOMAINS] + [
        "app.composition",
        "app.deps",
        "app.main",
    ]
    found = {
        (module, target)
        for module in kit
        for target in graph[module]
        if any(_inside(target, other) for other in forbidden)
    }
    assert found == set()


def test_app_never_imports_the_tests_or_the_benchmarks():
    """`tests/` and `bench/` are not shipped: what the sandbox needs of them is `app.devkit`."""
    assert import_graph()[1] & {"tests", "bench"} == set()
