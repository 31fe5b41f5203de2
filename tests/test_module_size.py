"""No production file in vigie/ over MAX_LINES lines (issue 18: files that do one job).

A module that grows past a few hundred lines has usually started doing a second job (the
1,500-line view file DESIGN.md warns about). Every text file of the package counts, Python
or templates, except the tests (not production) and what a tool writes, listed in
`GENERATED` with the tool: nobody reads those top to bottom, and splitting them by hand
would be undone by the next run. A pattern there that no longer matches anything fails too,
so the list cannot turn into a blanket waiver.

Run as a script (`python tests/test_module_size.py [root]`) to list the files over the
limit and the functions over FUNCTION_LINES lines: the candidates for names for their steps
(a judgement, so reported, not enforced).
"""

from __future__ import annotations

import ast
import sys
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "vigie"
MAX_LINES = 600
FUNCTION_LINES = 80

# Pattern (relative to vigie/) → the tool that writes these files.
GENERATED: dict[str, str] = {
    "*/migrations/*.py": "written by `makemigrations`; old ones are squashed, not split",
    "locale/*/LC_MESSAGES/django.po": "written by `makemessages` (one catalog per language)",
}
# Not production files: tests, caches, and what collectstatic gathers from other packages.
SKIPPED_DIRS = frozenset({"tests", "__pycache__", "static_collected"})


def production_files(root: Path = ROOT) -> list[Path]:
    """The package's text files that are neither tests nor generated (binaries are skipped)."""
    found = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if not path.is_file() or SKIPPED_DIRS & set(rel.parts[:-1]):
            continue
        if any(fnmatch(rel.as_posix(), pattern) for pattern in GENERATED):
            continue
        try:
            path.read_text(encoding="utf-8")
        except UnicodeDecodeError:  # compiled catalogs, images: not read by people
            continue
        found.append(path)
    return found


def line_count(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def oversized(root: Path = ROOT) -> list[str]:
    """`path: N lines` for every production file over MAX_LINES."""
    return [
        f"{path.relative_to(root).as_posix()}: {count} lines"
        for path in production_files(root)
        if (count := line_count(path)) > MAX_LINES
    ]


def long_functions(root: Path = ROOT) -> list[str]:
    """`path:line name: N lines` for every function of a production module over FUNCTION_LINES."""
    found = []
    for path in production_files(root):
        if path.suffix != ".py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > FUNCTION_LINES:
                    where = f"{path.relative_to(root).as_posix()}:{node.lineno}"
                    found.append(f"{where} {node.name}: {length} lines")
    return found


def test_no_production_file_is_over_the_limit() -> None:
    assert oversized() == []


def test_every_generated_pattern_still_matches_a_file() -> None:
    files = [path.relative_to(ROOT).as_posix() for path in ROOT.rglob("*") if path.is_file()]
    unused = [p for p in GENERATED if not any(fnmatch(name, p) for name in files)]
    assert unused == []


def test_the_size_check_catches_a_long_module(tmp_path: Path) -> None:
    long = "\n".join(f"x{n} = {n}" for n in range(MAX_LINES + 1)) + "\n"
    at_limit = "\n".join(f"x{n} = {n}" for n in range(MAX_LINES)) + "\n"
    for rel, text in {
        "guard/probe.py": long,
        "guard/templates/guard/page.html": long,
        "guard/windows.py": at_limit,
        "guard/tests/test_probe.py": long,
        "guard/migrations/0001_initial.py": long,
        "locale/fr/LC_MESSAGES/django.po": long,
    }.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text, encoding="utf-8")
    (tmp_path / "locale/fr/LC_MESSAGES/django.mo").write_bytes(b"\xde\x12\x04\x95" + b"\xff" * 9)

    assert oversized(tmp_path) == [
        f"guard/probe.py: {MAX_LINES + 1} lines",
        f"guard/templates/guard/page.html: {MAX_LINES + 1} lines",
    ]


def main(argv: list[str]) -> None:
    root = Path(argv[1]).resolve() / "vigie" if len(argv) > 1 else ROOT
    for line in oversized(root) + long_functions(root):
        print(line)


if __name__ == "__main__":
    main(sys.argv)
