"""The settings module is the one list of what Vigie reads, and the example file shows it all.

`deploy/vigie.env.example` is what a clinic copies to /etc/vigie/vigie.env; docs/operations.md
promises every variable is there. So both directions are checked against the settings
module's syntax tree (every `env.<reader>("NAME")` and `os.environ`/`os.getenv` read in
vigie/settings.py): a variable the settings read but the example omits is a setting nobody
will find, and a name the example sets but the settings never read is silently ignored.
And nothing else under vigie/ reads a VIGIE_* variable from the environment: a read outside
the settings module is one this comparison, and `vigie check`, cannot see.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

# Reads no database: the same on both passes.
pytestmark = pytest.mark.sqlite_only

REPO = Path(__file__).resolve().parent.parent
SETTINGS = REPO / "vigie" / "settings.py"
ENV_EXAMPLE = REPO / "deploy" / "vigie.env.example"

# vigie.lib.env's readers; `secret(NAME)` reads NAME and NAME_FILE.
ENV_READERS = {
    "string",
    "boolean",
    "integer",
    "choice",
    "string_list",
    "choice_lists",
    "path",
    "secret",
}

# Read by the settings but not something an operator sets in vigie.env: the example must still
# name each one (in a comment saying why), so that whoever greps the example finds it.
NOT_SET_IN_THE_EXAMPLE = {
    "CREDENTIALS_DIRECTORY": "systemd sets it for the service (LoadCredentialEncrypted=)",
    "VIGIE_KEYRING_DIR": "the old name of VIGIE_KEYS_DIR, read only to refuse it",
    "VIGIE_TRUSTED_PROXIES": "`vigie serve --behind-proxy` sets it for its own workers",
}

# Read by a command, from its own environment, on purpose: not a setting of the installation.
COMMAND_INPUTS = {
    # A secret typed for one command (`vigie keys export`, `vigie backup verify --keys`): in
    # the settings it would belong in vigie.env, which every unit loads and which sits on
    # the very server whose keys the export is meant to outlive.
    "VIGIE_KEYS_PASSPHRASE",
}


def _literal(node: ast.expr, constants: dict[str, str], strict: bool) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name) and node.id in constants:
        return constants[node.id]
    if not strict:
        return None
    raise AssertionError(
        f"line {node.lineno}: an environment variable named by an expression "
        f"({ast.unparse(node)}): name it with a string literal so it can be checked"
    )


def _is_os_environ(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "environ"
        and isinstance(node.value, ast.Name)
        and node.value.id == "os"
    )


def environment_reads(source: str, *, strict: bool = True) -> set[str]:
    """Every environment variable a module's source reads, by its syntax tree.

    Strict (the settings module): a name held in an expression is an error. Otherwise it is
    skipped (`{name: os.environ[name] for name in KEPT}`: a copy of the environment for a
    child process, not a read of a setting).
    """
    tree = ast.parse(source)
    # Module-level NAME = "VIGIE_..." constants, so `os.environ.get(PASSPHRASE_ENV)` counts.
    constants = {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    found: list[str | None] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
            if _is_os_environ(node.value):  # os.environ["NAME"]
                found.append(_literal(node.slice, constants, strict))
            continue
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        func, owner = node.func, node.func.value
        if isinstance(owner, ast.Name) and owner.id == "env":
            if func.attr in {"ConfigError"}:
                continue
            assert func.attr in ENV_READERS, f"line {node.lineno}: unknown reader env.{func.attr}"
            name = _literal(node.args[0], constants, strict)
            found.append(name)
            if func.attr == "secret" and name is not None:
                found.append(f"{name}_FILE")
        elif (func.attr == "get" and _is_os_environ(owner)) or (
            func.attr == "getenv" and isinstance(owner, ast.Name) and owner.id == "os"
        ):
            found.append(_literal(node.args[0], constants, strict))
    return {name for name in found if name is not None}


def settings_variables() -> set[str]:
    return environment_reads(SETTINGS.read_text(encoding="utf-8"))


def example_assignments(text: str) -> set[str]:
    """NAME=value lines of the example, commented out (`#NAME=`) or not."""
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, re.M))


def missing_from_example(text: str) -> list[str]:
    """What the settings read that the example neither sets nor, for the exceptions, names."""
    assigned = example_assignments(text)
    return sorted(
        name
        for name in settings_variables()
        if name not in assigned
        and not (name in NOT_SET_IN_THE_EXAMPLE and re.search(rf"\b{name}\b", text))
    )


def test_the_example_shows_every_variable_the_settings_read() -> None:
    assert missing_from_example(ENV_EXAMPLE.read_text(encoding="utf-8")) == []


def test_the_example_names_only_variables_the_settings_read() -> None:
    names = example_assignments(ENV_EXAMPLE.read_text(encoding="utf-8"))
    assert {"VIGIE_MODE", "VIGIE_HOME", "DATABASE_URL", "VIGIE_ALLOWED_HOSTS"} <= names
    # A misspelt variable would be silently ignored.
    assert sorted(names - settings_variables()) == []


def test_the_comparison_catches_a_variable_missing_from_the_example() -> None:
    example = ENV_EXAMPLE.read_text(encoding="utf-8")
    for name in ("VIGIE_REAUTH_MAX_AGE_SECONDS", "VIGIE_SECRET_KEY_FILE", "VIGIE_TLS_KEY"):
        without = re.sub(rf"^#?{name}=.*\n", "", example, flags=re.M)
        assert without != example, f"{name} is not a line of the example"
        assert missing_from_example(without) == [name]
    # An exception must still be named somewhere in the example.
    without = example.replace("VIGIE_KEYRING_DIR", "the old name")
    assert missing_from_example(without) == ["VIGIE_KEYRING_DIR"]


def test_the_settings_reader_sees_every_form_of_read() -> None:
    source = (
        "import os\nfrom vigie.lib import env\n"
        'NAME = "VIGIE_G"\n'
        'A = env.path(\n    "VIGIE_A",\n    default,\n)\n'
        'B = env.secret("VIGIE_B")\n'
        'C = os.environ.get("VIGIE_C")\n'
        'D = os.getenv("VIGIE_D", "")\n'
        'E = os.environ["VIGIE_E"]\n'
        'os.environ["VIGIE_F"] = "written, not read"\n'
        "G = os.environ.get(NAME)\n"
        "raise env.ConfigError('x')\n"
    )
    assert environment_reads(source) == {
        "VIGIE_A",
        "VIGIE_B",
        "VIGIE_B_FILE",
        "VIGIE_C",
        "VIGIE_D",
        "VIGIE_E",
        "VIGIE_G",
    }
    # A name the test cannot read is refused, never skipped.
    with pytest.raises(AssertionError, match="string literal"):
        environment_reads("from vigie.lib import env\nX = env.string(prefix + 'HOME')\n")
    with pytest.raises(AssertionError, match="unknown reader"):
        environment_reads("from vigie.lib import env\nX = env.decimal('VIGIE_X')\n")


def test_only_the_settings_module_reads_vigie_variables() -> None:
    readers: dict[str, set[str]] = {}
    for path in sorted((REPO / "vigie").rglob("*.py")):
        if path == SETTINGS or "tests" in path.parts or path.name == "env.py":
            continue
        names = environment_reads(path.read_text(encoding="utf-8"), strict=False)
        vigie = {n for n in names if n.startswith("VIGIE_")} - COMMAND_INPUTS
        if vigie:
            readers[str(path.relative_to(REPO))] = vigie
    assert readers == {}, "read these in vigie/settings.py and ask django.conf.settings"
