"""Is STATIC_ROOT in step with the code? Answered without loading Django's applications.

`vigie serve` used to run collectstatic at every start to keep CSS and the admin's assets in
step with the installed code. collectstatic itself is quick, but it needs the applications
loaded (django.setup(), ~0.5 s of CPU in a process that then only execs granian). After each
collectstatic we write a stamp: the settings that decide what is collected, the source
folders it read (and the applications' folders, so a `static/` that appears is seen) and
the size and mtime of every file on both sides. A start whose stamp still matches skips the
collection; anything changed, missing or unreadable collects again. The stamp lives in
VIGIE_HOME (see stamp_path).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from pathlib import Path

from django.conf import settings

STAMP_NAME = "static-collected.json"


def stamp_path() -> Path:
    # In VIGIE_HOME, not in STATIC_ROOT: whatever is there is served to anyone, and the stamp
    # names the installation's folders.
    return Path(settings.VIGIE_HOME) / STAMP_NAME


def _settings_key() -> str:
    # What decides the set of files collected, and where to.
    decisive = [
        list(settings.INSTALLED_APPS),
        [str(d) for d in settings.STATICFILES_DIRS],
        list(getattr(settings, "STATICFILES_FINDERS", [])),
        str(settings.STATIC_ROOT),
        repr(settings.STORAGES.get("staticfiles")),
    ]
    return hashlib.sha256(json.dumps(decisive, sort_keys=True).encode()).hexdigest()


def _tree_digest(folders: list[str]) -> str:
    digest = hashlib.sha256()
    for folder in folders:
        digest.update(f"\0folder {folder}\n".encode())
        for parent, subdirs, files in os.walk(folder):
            subdirs.sort()
            for name in sorted(files):
                path = Path(parent) / name
                stat = path.stat()
                relative = path.relative_to(folder)
                digest.update(f"{relative}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _present_static_folders(app_folders: list[str]) -> list[str]:
    return [f for f in app_folders if (Path(f) / "static").is_dir()]


def in_step() -> bool:
    """True when the last collection's stamp matches the sources and STATIC_ROOT as they are."""
    root = Path(settings.STATIC_ROOT)
    try:
        stamp = json.loads(stamp_path().read_text(encoding="utf-8"))
        return bool(
            stamp["settings"] == _settings_key()
            and stamp["apps_with_static"] == _present_static_folders(stamp["app_folders"])
            and stamp["sources_digest"] == _tree_digest(stamp["sources"])
            and stamp["root_digest"] == _tree_digest([str(root)])
        )
    except (OSError, ValueError, KeyError, TypeError):
        return False


def collect() -> None:
    """collectstatic (loading the applications), then the stamp that lets the next start skip it."""
    import django
    from django.apps import apps
    from django.contrib.staticfiles.finders import get_finders
    from django.core.management import call_command

    django.setup()
    call_command("collectstatic", interactive=False, verbosity=0)
    sources: list[str] = []
    for finder in get_finders():
        storages = getattr(finder, "storages", None)
        if storages is None:  # a finder we cannot read: no stamp, collect at every start
            return
        sources += sorted(str(storage.location) for storage in storages.values())
    app_folders = sorted(str(config.path) for config in apps.get_app_configs())
    root = Path(settings.STATIC_ROOT)
    stamp = {
        "settings": _settings_key(),
        "app_folders": app_folders,
        "apps_with_static": _present_static_folders(app_folders),
        "sources": sources,
        "sources_digest": _tree_digest(sources),
        "root_digest": _tree_digest([str(root)]),
    }
    # A temporary name of this process's own: nodes of a group started together on a shared
    # VIGIE_HOME collect at once, and with one fixed name the second rename found the file
    # gone (FileNotFoundError, and that node did not start). Either stamp is right.
    temporary = stamp_path().with_name(f".{STAMP_NAME}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        temporary.write_text(json.dumps(stamp), encoding="utf-8")
        temporary.replace(stamp_path())
    finally:
        temporary.unlink(missing_ok=True)
