"""Lint rules in Zulip's manner: the one door stays the only door.

1. Only the vault, records.content, records.fsck, records.keys and the portal's door may
   call `vault.open` or `stream_verified`; only records.results_store opens sealed
   results (`vault.open_record`), and only the door calls its openers (`open_results`,
   `open_attachment`). Tests excepted: they check the plaintext.
2. Every portal view that takes a patient or document id goes through the access helpers.
"""

from __future__ import annotations

import ast
from pathlib import Path

import vigie

ROOT = Path(vigie.__file__).resolve().parent
ALLOWED = {
    "records/content.py",
    "records/fsck.py",
    "records/keys.py",
    "portal/door.py",
}
# A lab document's values: sealed by records.results_store, opened by the door only.
RESULTS_OPENERS = {"open_results", "open_attachment", "open_record"}
RESULTS_ALLOWED = {"records/results_store.py", "portal/door.py"}
ACCESS_HELPERS = {
    "patient_in_scope_or_404",
    "document_in_scope_or_404",
    "serve_document",
    "lab_results",
    "serve_results_pdf",
    "serve_attachment",
}
ID_PARAMETERS = {"public_id", "doc_id", "document_id", "patient_id"}


def production_modules() -> list[Path]:
    return [
        path
        for path in ROOT.rglob("*.py")
        if "tests" not in path.relative_to(ROOT).parts
        and "migrations" not in path.relative_to(ROOT).parts
        and path.relative_to(ROOT).parts[0] != "vault"
    ]


def reads_plaintext(tree: ast.AST) -> list[str]:
    """Calls and imports of the plaintext readers, however they are spelled."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = {alias.name for alias in node.names}
            if "stream_verified" in names or (node.module == "vigie.vault" and "open" in names):
                found.append(f"line {node.lineno}: from {node.module} import {sorted(names)}")
            if node.module.startswith("vigie.vault.envelope") or "open_chunks" in names:
                found.append(f"line {node.lineno}: imports the vault's decryption")
        elif isinstance(node, ast.Attribute) and node.attr in {"stream_verified", "open_chunks"}:
            found.append(f"line {node.lineno}: .{node.attr}")
        elif (
            isinstance(node, ast.Attribute)
            and node.attr == "open"
            and isinstance(node.value, ast.Name)
            and node.value.id == "vault"
        ):
            found.append(f"line {node.lineno}: vault.open")
    return found


def test_it_keeps_plaintext_behind_the_one_door() -> None:
    offenders = {}
    for path in production_modules():
        rel = path.relative_to(ROOT).as_posix()
        if rel in ALLOWED:
            continue
        hits = reads_plaintext(ast.parse(path.read_text(encoding="utf-8")))
        if hits:
            offenders[rel] = hits
    assert offenders == {}, (
        "document plaintext must go through vigie/portal/door.py (decide → audit → vault)"
    )


def opens_results(tree: ast.AST) -> list[str]:
    """Imports and calls of the lab results' openers, however they are spelled."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = {alias.name for alias in node.names} & RESULTS_OPENERS
            if names:
                found.append(f"line {node.lineno}: from {node.module} import {sorted(names)}")
        elif isinstance(node, ast.Attribute) and node.attr in RESULTS_OPENERS:
            found.append(f"line {node.lineno}: .{node.attr}")
        elif isinstance(node, ast.Name) and node.id in RESULTS_OPENERS:
            found.append(f"line {node.lineno}: {node.id}")
    return found


def test_it_keeps_lab_values_behind_the_one_door() -> None:
    offenders = {}
    for path in production_modules():
        rel = path.relative_to(ROOT).as_posix()
        if rel in RESULTS_ALLOWED:
            continue
        hits = opens_results(ast.parse(path.read_text(encoding="utf-8")))
        if hits:
            offenders[rel] = hits
    assert offenders == {}, "lab values must go through vigie/portal/door.py"


def test_the_results_lint_catches_a_back_door() -> None:
    sneaky = "from vigie.records.results_store import open_results\nopen_results(d)\n"
    assert opens_results(ast.parse(sneaky))
    assert opens_results(ast.parse("from vigie import vault\nvault.open_record(a, b, c, d, 0)\n"))
    aliased = "import vigie.records.results_store as s\ns.open_attachment(d)\n"
    assert opens_results(ast.parse(aliased))
    assert not opens_results(ast.parse("from vigie.records.results import ResultSet\n"))


def test_the_lint_catches_a_back_door() -> None:
    sneaky = "from vigie.records.content import stream_verified\nb''.join(stream_verified(d))\n"
    assert reads_plaintext(ast.parse(sneaky))
    assert reads_plaintext(ast.parse("from vigie import vault\nvault.open(a, b, c)\n"))
    assert not reads_plaintext(ast.parse("with open(path) as f: pass\n"))


def view_modules() -> list[Path]:
    portal = ROOT / "portal"
    return sorted([*portal.glob("views*.py"), *(portal / "views").glob("*.py")])


def unguarded_views(tree: ast.AST) -> list[str]:
    missing = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef) or node.name.startswith("_"):
            continue
        params = {arg.arg for arg in node.args.args + node.args.kwonlyargs}
        if not params & ID_PARAMETERS:
            continue
        called = {
            call.func.id if isinstance(call.func, ast.Name) else getattr(call.func, "attr", "")
            for call in ast.walk(node)
            if isinstance(call, ast.Call)
        }
        if not called & ACCESS_HELPERS:
            missing.append(node.name)
    return missing


def test_every_view_with_an_id_goes_through_the_access_helpers() -> None:
    modules = view_modules()
    assert modules, "no portal view module found: the lint would check nothing"
    # The FHIR reading channel serves the same documents to machine clients: same rule.
    assert "fhir.py" in {path.name for path in modules}
    missing = {
        path.name: unguarded_views(ast.parse(path.read_text(encoding="utf-8"))) for path in modules
    }
    assert {name: views for name, views in missing.items() if views} == {}


def test_the_view_lint_catches_an_unguarded_view() -> None:
    code = "def peek(request, doc_id):\n    return Document.objects.get(pk=doc_id)\n"
    assert unguarded_views(ast.parse(code)) == ["peek"]
