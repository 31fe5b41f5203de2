"""Typed readers for VIGIE_* environment variables.

Every setting comes from the environment so one settings module serves production, the demo
and the tests. A value that cannot be parsed raises `ConfigError` naming the variable, so the
operator gets one line that says what to fix instead of a traceback.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path


class ConfigError(Exception):
    """A configuration value is missing or malformed; the message names it."""


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _raw(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    value = (os.environ if environ is None else environ).get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip()


def string(name: str, default: str | None = None) -> str | None:
    value = _raw(name)
    return default if value is None else value


def boolean(name: str, default: bool) -> bool:
    value = _raw(name)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{name}={value!r} is not a boolean (use true or false)")


def integer(name: str, default: int, minimum: int | None = None, maximum: int | None = None) -> int:
    value = _raw(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not an integer") from None
    if minimum is not None and number < minimum:
        raise ConfigError(f"{name}={number} is below the minimum of {minimum}")
    if maximum is not None and number > maximum:
        raise ConfigError(f"{name}={number} is above the maximum of {maximum}")
    return number


def choice(name: str, choices: Sequence[str], default: str) -> str:
    value = _raw(name)
    if value is None:
        return default
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not one of: {', '.join(choices)}")
    return value


def string_list(name: str, default: Sequence[str] = ()) -> list[str]:
    value = _raw(name)
    if value is None:
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


def choice_lists(
    name: str,
    keys: Sequence[str],
    choices: Sequence[str],
    default: Mapping[str, Sequence[str]],
) -> dict[str, list[str]]:
    """`key=a,b;key2=c`: for each key, a non-empty list of choices; unnamed keys keep their
    default. An unknown key or choice, a key named twice or an empty list is refused: a typo
    in who may sign in how must stop the start, never quietly allow or forbid."""
    result = {key: list(default.get(key, ())) for key in keys}
    value = _raw(name)
    if value is None:
        return result
    seen: set[str] = set()
    for part in (p.strip() for p in value.split(";")):
        if not part:
            continue
        key, sep, items = (x.strip() for x in part.partition("="))
        if not sep or key not in keys:
            raise ConfigError(
                f"{name}: {part!r} is not `KEY=a,b` with KEY one of: {', '.join(keys)}"
            )
        if key in seen:
            raise ConfigError(f"{name}: {key} is named twice")
        seen.add(key)
        chosen = [item.strip() for item in items.split(",") if item.strip()]
        unknown = [item for item in chosen if item not in choices]
        if unknown or not chosen:
            raise ConfigError(
                f"{name}: {key}={items!r} must list one or more of: {', '.join(choices)}"
            )
        result[key] = list(dict.fromkeys(chosen))
    return result


def path(name: str, default: Path) -> Path:
    value = _raw(name)
    return (Path(value) if value is not None else default).expanduser().absolute()


def secret(name: str) -> str | None:
    """A secret given directly (NAME) or, preferably, as a file (NAME_FILE).

    Files keep secrets out of process listings and shell history; the file variant wins when
    both are set because that is what service managers (systemd credentials) provide.
    """
    file_name = _raw(f"{name}_FILE")
    if file_name is not None:
        try:
            content = Path(file_name).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{name}_FILE={file_name}: cannot read ({exc.strerror})") from None
        if not content:
            raise ConfigError(f"{name}_FILE={file_name} is empty")
        return content
    return _raw(name)
