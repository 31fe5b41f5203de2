"""The benchmark modules import one another in one direction only.

fetch and orthanc, chart and run once imported each other (inside functions, so Python let
it pass): the helpers they shared now live in modules of their own (processes, payload,
figures). Every import counts here, at the top of a module or inside a function.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

# Reads source files only: the same on both passes.
pytestmark = pytest.mark.sqlite_only

BENCH = Path(__file__).resolve().parent.parent / "bench"


def bench_imports(sources: dict[str, str]) -> dict[str, set[str]]:
    """{module: the other bench modules it imports}, by syntax tree."""
    graph: dict[str, set[str]] = {name: set() for name in sources}
    for name, source in sources.items():
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom) and node.module == "bench":
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("bench."):
                targets = [(node.module or "").split(".")[1]]
            elif isinstance(node, ast.Import):
                targets = [a.name.split(".")[1] for a in node.names if a.name.startswith("bench.")]
            else:
                continue
            graph[name] |= {t for t in targets if t in sources and t != name}
    return graph


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the list of modules around it, or None."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        for target in sorted(graph[node]):
            found = visit(target, [*path, node])
            if found:
                return found
        done.add(node)
        return None

    for start in sorted(graph):
        found = visit(start, [])
        if found:
            return found
    return None


def test_the_bench_modules_import_each_other_without_a_cycle() -> None:
    sources = {p.stem: p.read_text(encoding="utf-8") for p in BENCH.glob("*.py")}
    graph = bench_imports(sources)
    assert "orthanc" in graph["fetch"]  # the graph is really read
    assert cycle(graph) is None


def test_the_cycle_check_catches_an_import_inside_a_function() -> None:
    sources = {
        "run": "from bench.figures import figures\ndef f():\n    from bench import chart\n",
        "chart": "def render():\n    from bench.run import ingest_rates\n",
        "figures": "import json\n",
    }
    assert cycle(bench_imports(sources)) == ["chart", "run", "chart"]
