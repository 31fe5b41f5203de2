"""The import layers of DESIGN.md ("How data flows"), enforced.

    entry    settings, urls, wsgi, cli, __main__   may import anything; nothing imports them
    top      portal, intake, guard, backup, ops, demo, startup
    domain   records > audit, alerts, accounts; synthetic (generators, no models)
    vault    vault
    base     lib (and the `vigie` package itself, for its version): imports no app

An app may import any app of a lower layer. Upward imports are refused. Sideways imports
(two apps of one layer) are refused unless `SIDEWAYS` lists the pair with its reason, and a
listed pair that no longer occurs fails too, so the list cannot rot into a blanket waiver.
Imports inside functions and under `if TYPE_CHECKING:` count: a lazy import is still a
dependency, and a type-only one still says what the importer knows about.

Run as a script (`python tests/test_layers.py [root]`) to print the imports between apps,
with where they are: the picture the layers are judged on.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "vigie"

LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"settings", "urls", "wsgi", "cli", "__main__"}),
    frozenset({"portal", "intake", "guard", "backup", "ops", "demo", "startup"}),
    # synthetic draws patients and PDFs for the demo and for the guard's decoys: no models,
    # no database, but the INS it draws must pass records' own check, hence a domain app.
    frozenset({"records", "audit", "alerts", "accounts", "synthetic"}),
    frozenset({"vault"}),
    # The vault writes through lib's durable file steps, shared with audit, backup and startup.
    frozenset({"lib", "vigie"}),
)

# (importer, imported): why these two apps of one layer may not be kept apart.
SIDEWAYS: dict[tuple[str, str], str] = {
    # records sits on top of the domain layer: it records its changes and knows the doctors
    # it relates to patients; audit, alerts and accounts never import records.
    ("records", "accounts"): "care relationships and access decisions name users and roles",
    ("records", "audit"): "ingest, bulk imports and the admin write their audit events",
    # audit, alerts and accounts lean on each other; each pair is one named use.
    ("accounts", "audit"): "sign-ins, invitations and admin changes are audited",
    ("accounts", "alerts"): "new administrators and role changes raise an alert",
    ("alerts", "accounts"): "alerts are addressed to users by role",
    ("alerts", "audit"): "acknowledging an alert is audited",
    ("audit", "alerts"): "the anomaly rules raise alerts and the audit page lists them",
    ("audit", "accounts"): "an event's actor is a user (type hints only)",
    ("synthetic", "records"): "a synthetic patient's INS carries the key records checks "
    "(records.identifiers.nir_key), so decoys pass the validators real patients pass",
    # The one way back up, confined to one module by ONLY_FROM below.
    ("audit", "records"): "the audited admin mixin refuses patient-data pages during a "
    "lockdown (records.access.ensure_served) and knows which models are patient data",
    # top layer
    ("ops", "guard"): "`vigie check` judges the guard's policy, nftables and watcher",
    ("ops", "intake"): "`vigie check` judges the intake listeners' certificates",
    ("ops", "startup"): "`vigie check` and `vigie init` run the preflight the process runs",
    ("ops", "backup"): "`vigie keys export` writes the sealed key export that backups carry",
    ("portal", "intake"): "the FHIR reading channel answers on intake's FHIR endpoint, in its "
    "dialect (resources, OperationOutcome), hands a POST on DocumentReference to intake, and "
    "refuses intake's API keys by name",
}

# Sideways pairs allowed only from these modules.
ONLY_FROM: dict[tuple[str, str], frozenset[str]] = {
    ("audit", "records"): frozenset({"audit/admin_audit.py"}),
    # The identifiers' rules only; the generators know no model and no database.
    ("synthetic", "records"): frozenset({"synthetic/clinic.py"}),
}

# Imports DESIGN.md forbids even where the layers would allow them.
FORBIDDEN: dict[tuple[str, str], str] = {
    ("portal", "vault"): "the portal reaches documents only through the one door",
}

# Production code never imports `demo`, not even an entry point: the demo seeds a clinic,
# and what the decoys share with it (patients, PDFs) lives in `synthetic`.
DEMO = "demo"


def app_of(module: str) -> str | None:
    """The app (first package under vigie) a dotted module name belongs to."""
    parts = module.split(".")
    if parts[0] != "vigie":
        return None
    if len(parts) == 1:
        return "vigie"
    first = parts[1]
    if (ROOT / first).is_dir() or (ROOT / f"{first}.py").is_file():
        return first
    return "vigie"  # a name defined in vigie/__init__.py (__version__)


def imported_modules(tree: ast.AST, rel: Path) -> list[tuple[int, str]]:
    """(line, dotted module) for every import in `tree`, relative ones resolved."""
    package = ("vigie", *rel.with_suffix("").parts)[:-1]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                module = ".".join((*base, *([node.module] if node.module else [])))
            else:
                module = node.module or ""
            # `from vigie import vault` imports the app, not the package.
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def source_app(rel: Path) -> str:
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def add_imports(edges: dict[tuple[str, str], list[str]], rel: Path, tree: ast.AST) -> None:
    src = source_app(rel)
    for line, module in imported_modules(tree, rel):
        dst = app_of(module)
        place = f"{rel.as_posix()}:{line}"
        if dst is not None and dst != src and place not in edges[(src, dst)]:
            edges[(src, dst)].append(place)


def imports_between_apps(root: Path = ROOT) -> dict[tuple[str, str], list[str]]:
    """{(importer, imported): ["file:line", ...]} over the production modules."""
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if "tests" not in rel.parts and "migrations" not in rel.parts:
            add_imports(edges, rel, ast.parse(path.read_text(encoding="utf-8")))
    return dict(edges)


def layer_of(app: str) -> int | None:
    for rank, layer in enumerate(LAYERS):
        if app in layer:
            return rank
    return None


def violations(edges: dict[tuple[str, str], list[str]]) -> list[str]:
    found = []
    for (src, dst), where in sorted(edges.items()):
        here, there = layer_of(src), layer_of(dst)
        if here is None or there is None:
            found.append(f"{src} -> {dst}: {src if here is None else dst} is in no layer")
        elif (src, dst) in FORBIDDEN:
            found.append(f"{src} -> {dst} is forbidden ({FORBIDDEN[src, dst]}): {where}")
        elif dst == DEMO:
            found.append(f"{src} -> demo: production code never imports demo: {where}")
        elif here == 0:
            continue  # the entry points put the whole together
        elif here > there:
            found.append(f"{src} -> {dst} imports upward: {where}")
        elif here == there and (src, dst) not in SIDEWAYS:
            found.append(f"{src} -> {dst} imports sideways, not listed in SIDEWAYS: {where}")
        elif (src, dst) in ONLY_FROM:
            strays = [w for w in where if w.split(":")[0] not in ONLY_FROM[src, dst]]
            if strays:
                found.append(f"{src} -> {dst} only from {sorted(ONLY_FROM[src, dst])}: {strays}")
    return found


def test_it_keeps_the_layers() -> None:
    assert violations(imports_between_apps()) == []


def test_every_allowed_sideways_import_is_still_needed() -> None:
    edges = imports_between_apps()
    assert [pair for pair in SIDEWAYS if pair not in edges] == []


def test_every_app_has_a_layer() -> None:
    apps = {path.name for path in ROOT.iterdir() if (path / "__init__.py").is_file()}
    modules = {path.stem for path in ROOT.glob("*.py") if path.name != "__init__.py"}
    assert sorted(name for name in apps | modules if layer_of(name) is None) == []


def edges_of(rel: str, code: str) -> dict[tuple[str, str], list[str]]:
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    add_imports(edges, Path(rel), ast.parse(code))
    return dict(edges)


def test_the_layer_lint_catches_a_violation() -> None:
    upward = edges_of("vault/envelope.py", "from vigie.records.models import Document\n")
    assert violations(upward) == ["vault -> records imports upward: ['vault/envelope.py:1']"]
    # Lazy, type-only and relative imports are dependencies all the same.
    lazy = "def f():\n    from vigie.portal.door import serve_document\n"
    assert violations(edges_of("lib/headers.py", lazy))
    assert violations(edges_of("lib/durable.py", "from vigie.vault import layout\n"))
    typed = "if TYPE_CHECKING:\n    from vigie.records.models import Patient\n"
    assert violations(edges_of("alerts/services.py", typed))
    assert violations(edges_of("records/access.py", "from ..portal.door import serve_document\n"))
    assert violations(edges_of("portal/views/documents.py", "from vigie import vault\n"))
    assert violations(edges_of("guard/daemon.py", "from vigie.demo.seed import seed\n"))
    assert violations(edges_of("guard/decoys.py", "from vigie.demo import seed\n"))
    assert violations(edges_of("intake/hl7/render.py", "from vigie.demo import seed\n"))
    assert violations(edges_of("cli.py", "from vigie.demo.seed import seed\n"))
    assert violations(edges_of("synthetic/pdf/lab.py", "from vigie.records import models\n"))
    assert violations(edges_of("synthetic/clinic.py", "from vigie.guard import decoys\n"))
    assert violations(edges_of("intake/folder.py", "from vigie.guard import lockdown\n"))
    assert violations(edges_of("audit/rules.py", "from vigie.records import models\n"))
    assert violations(edges_of("audit/admin_audit.py", "from vigie.records import access\n")) == []
    # ...and what the layers allow passes.
    assert violations(edges_of("portal/door.py", "from vigie.records import access\n")) == []
    assert violations(edges_of("guard/decoys.py", "from vigie.synthetic import clinic\n")) == []
    assert violations(edges_of("intake/hl7/render.py", "from vigie.lib import pdf_style\n")) == []
    assert violations(edges_of("demo/seed.py", "from vigie.synthetic.pdf import lab\n")) == []
    assert violations(edges_of("records/ingest.py", "from .models import Document\n")) == []
    assert violations(edges_of("cli.py", "from vigie.ops import checks\n")) == []


def main(argv: list[str]) -> None:
    root = Path(argv[1]).resolve() / "vigie" if len(argv) > 1 else ROOT
    for (src, dst), where in sorted(imports_between_apps(root).items()):
        print(f"{src} -> {dst} ({len(where)}): {', '.join(where)}")


if __name__ == "__main__":
    main(sys.argv)
