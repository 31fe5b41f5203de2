"""Where test helpers live, and what they may import: one convention, enforced.

* Fixtures live in conftest.py files only (the repository's root conftest.py holds the ones
  every app uses: `vault_home`, `audit_committing`, `netns`).
* Helpers that more than one test module uses live in `vigie/<app>/testing.py` (or a
  sub-package's): plain code on the runtime dependencies. Those modules ship in the wheel,
  where pytest and the other dev tools are not installed, so they never import them; a
  fixture that wraps a helper (a context manager) is written in a conftest.
* A `tests/` folder holds test modules, conftest.py and __init__.py, nothing else; a test
  module imports helpers from `testing` modules, never from a conftest or another test
  module (importing one runs its tests' module-level code and couples two test files).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "vigie"

# The dev extra of pyproject.toml (and pytest's own packages): absent from an installation.
DEV_ONLY = frozenset(
    {"pytest", "_pytest", "pytest_django", "hypothesis", "playwright", "schemathesis"}
    | {"pydicom", "matplotlib"}
)


def _modules() -> list[tuple[Path, ast.AST]]:
    return [
        (path.relative_to(ROOT), ast.parse(path.read_text(encoding="utf-8")))
        for path in sorted(ROOT.rglob("*.py"))
        if "migrations" not in path.parts
    ]


def _imports(tree: ast.AST) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def dev_imports_in_shipped_code(modules: list[tuple[Path, ast.AST]]) -> list[str]:
    return [
        f"{rel}:{line} imports {name}"
        for rel, tree in modules
        if "tests" not in rel.parts
        for line, name in _imports(tree)
        if name.split(".")[0] in DEV_ONLY
    ]


def helpers_inside_tests_folders(modules: list[tuple[Path, ast.AST]]) -> list[str]:
    return [
        str(rel)
        for rel, _tree in modules
        if "tests" in rel.parts
        and not (rel.name.startswith("test_") or rel.name in ("conftest.py", "__init__.py"))
    ]


def imports_of_test_modules(modules: list[tuple[Path, ast.AST]]) -> list[str]:
    return [
        f"{rel}:{line} imports {name}"
        for rel, tree in modules
        for line, name in _imports(tree)
        if name.startswith("vigie.") and ".tests." in f"{name}."
    ]


def test_no_shipped_module_imports_a_dev_tool() -> None:
    assert dev_imports_in_shipped_code(_modules()) == []


def test_tests_folders_hold_only_tests_and_conftests() -> None:
    assert helpers_inside_tests_folders(_modules()) == []


def test_no_module_imports_a_test_module_or_a_conftest() -> None:
    assert imports_of_test_modules(_modules()) == []


def test_the_checks_catch_each_breach() -> None:
    def parsed(rel: str, code: str) -> list[tuple[Path, ast.AST]]:
        return [(Path(rel), ast.parse(code))]

    lazy_fixture = "def f():\n    import pytest\n"
    assert dev_imports_in_shipped_code(parsed("audit/testing.py", lazy_fixture))
    assert dev_imports_in_shipped_code(parsed("guard/testing.py", "from _pytest import fixtures\n"))
    assert not dev_imports_in_shipped_code(parsed("audit/tests/conftest.py", "import pytest\n"))
    assert helpers_inside_tests_folders(parsed("records/tests/factories.py", ""))
    assert not helpers_inside_tests_folders(parsed("records/tests/test_models.py", ""))
    conftest = "from vigie.portal.tests.conftest import relate\n"
    assert imports_of_test_modules(parsed("intake/tests/test_fhir.py", conftest))
    sibling = "from vigie.intake.tests.test_fhir import post\n"
    assert imports_of_test_modules(parsed("intake/tests/test_refusals.py", sibling))
    assert not imports_of_test_modules(
        parsed("x/tests/test_y.py", "from vigie.portal import testing\n")
    )
