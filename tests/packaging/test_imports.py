"""Every module imports on its own, and no two modules import each other, directly or around a loop.

A cycle works until someone imports the modules in another order (a new entry point, a test run
alone, a worker process), then fails with a half-initialised module; so it is checked statically on
the whole import graph, and dynamically by importing each module first in a clean interpreter state.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import grimp


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = len(index)
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted(graph[succ]))))
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def _import_graph() -> dict[str, set[str]]:
    graph = grimp.build_graph("jitprov", exclude_type_checking_imports=True, cache_dir=None)
    modules = set(graph.modules)
    return {m: set(graph.find_modules_directly_imported_by(m)) & modules for m in modules}


def test_the_cycle_finder_finds_a_loop() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_the_package() -> None:
    assert _cycles(_import_graph()) == []


def test_every_module_imports_first() -> None:
    script = textwrap.dedent("""
        import importlib, pkgutil, sys
        import jitprov
        names = sorted(m.name for m in pkgutil.walk_packages(jitprov.__path__, "jitprov.")
                       # __main__ runs the CLI; Alembic runs env.py inside its own context
                       if not m.name.endswith((".__main__", ".migrations.env")))
        failed = []
        for name in names:
            for loaded in [m for m in sys.modules if m == "jitprov" or m.startswith("jitprov.")]:
                del sys.modules[loaded]
            try:
                importlib.import_module(name)
            except Exception as exc:
                failed.append(f"{name}: {type(exc).__name__}: {exc}")
        print(len(names))
        print("\\n".join(failed))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    count, _, failures = result.stdout.partition("\n")
    assert int(count) > 100  # the walk saw the package, not an empty path
    assert failures.strip() == ""
