"""The package layering is pinned: no import cycles, nothing below ``server/`` imports it, the core is light.

The graph is read from the sources (``ast``), counting module-level *and* function-level imports: a cycle
hidden behind a function-level import is still a cycle (issue 12 found one that way).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "crest_proxy"
# Packages allowed to import crest_proxy.server: the edge itself and the commands that start it.
SERVER_USERS = ("crest_proxy.server", "crest_proxy.cli")
HEAVY = ("starlette", "httpx", "yaml", "torch", "prometheus_client")
# The pure core: the policy model, every screening module, the stream dialects the relay and LiteLLM share.
LIGHT = (
    "crest_proxy.policy",
    "crest_proxy.policy.model",
    *sorted(f"crest_proxy.screening.{p.stem}" for p in (PACKAGE / "screening").glob("[!_]*.py")),
    "crest_proxy.streaming.choices",
    "crest_proxy.streaming.responses",
)


def module_name(path: Path) -> str:
    """``crest_proxy/a/b.py`` -> ``crest_proxy.a.b`` (a package's ``__init__`` is the package)."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(tree: ast.AST, module: str, is_package: bool) -> Iterator[str]:
    """Every crest_proxy module ``module`` imports, wherever the import statement sits."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def import_graph() -> dict[str, set[str]]:
    """crest_proxy's own import graph: module -> the crest_proxy modules it imports."""
    sources = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in sources.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        targets = imported(tree, name, path.name == "__init__.py")
        graph[name] = {t for t in targets if t in sources and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path of module names, or None (iterative DFS, three colours)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in sorted(graph):
        if root in state:
            continue
        path, stack = [root], [iter(sorted(graph[root]))]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def is_parent_package(importer: str, imported_module: str) -> bool:
    """A package's ``__init__`` importing its own submodule (re-exports) is not a layering edge."""
    return imported_module.startswith(importer + ".")


def test_the_import_graph_is_read_from_every_module() -> None:
    graph = import_graph()
    assert "crest_proxy.server.app" in graph
    assert "crest_proxy.server.endpoints" in graph["crest_proxy.server.app"]


def test_find_cycle_reports_a_cycle_and_accepts_a_dag() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_function_level_imports_are_edges_too() -> None:
    tree = ast.parse("def f():\n    from crest_proxy.server import relay\n")
    assert "crest_proxy.server.relay" in set(imported(tree, "crest_proxy.x", False))


def test_crest_proxy_has_no_import_cycle() -> None:
    graph = {
        module: {t for t in targets if not is_parent_package(module, t)}
        for module, targets in import_graph().items()
    }
    assert find_cycle(graph) is None


def test_nothing_below_server_imports_it() -> None:
    offenders = sorted(
        f"{module} imports {target}"
        for module, targets in import_graph().items()
        if not module.startswith(SERVER_USERS)
        for target in targets
        if target == "crest_proxy.server" or target.startswith("crest_proxy.server.")
    )
    assert offenders == []


@pytest.mark.parametrize("module", LIGHT)
def test_the_core_imports_no_framework_client_parser_runtime_or_metrics(module: str) -> None:
    probe = (
        "import importlib, json, sys\n"
        f"importlib.import_module({module!r})\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == [], f"importing {module} loads {result.stdout.strip()}"
