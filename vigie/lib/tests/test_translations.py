"""The French catalog: one project catalog, complete, compiled, and in step with the source.

Vigie is French-first: a string left untranslated shows English to a physician, and a stale
.mo silently serves yesterday's wording. The catalog is vigie/locale/fr/LC_MESSAGES/django.po
(LOCALE_PATHS); after adding strings, from vigie/ run

    DJANGO_SETTINGS_MODULE=tests.settings PYTHONPATH=.. ../.venv/bin/python -m django \
        makemessages -l fr --ignore 'tests/*' --ignore '*/tests/*' --no-obsolete

translate the new entries (remove `#, fuzzy` once checked), then `compilemessages -l fr`.
"""

from __future__ import annotations

import gettext
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.core.management import call_command
from django.utils import translation

PACKAGE = Path(__file__).resolve().parents[2]  # the vigie package directory
MESSAGES = PACKAGE / "locale" / "fr" / "LC_MESSAGES"
PO = MESSAGES / "django.po"
MO = MESSAGES / "django.mo"
IGNORE = ["tests/*", "*/tests/*"]  # as in the makemessages command above

# %(name)s, %s, %d… and str.format's {name} / {0}; "%%" is a literal percent sign.
_PLACEHOLDER = re.compile(
    r"%\([^)]+\)[#0 +-]*\d*(?:\.\d+)?[a-zA-Z]|%[#0 +-]*\d*(?:\.\d+)?[sdifr]|\{[\w.]*\}"
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}


@dataclass
class Entry:
    msgid: str = ""
    msgctxt: str | None = None
    msgid_plural: str | None = None
    msgstr: dict[int, str] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)

    @property
    def key(self) -> tuple[str | None, str, str | None]:
        return (self.msgctxt, self.msgid, self.msgid_plural)

    @property
    def label(self) -> str:
        return f"{self.msgctxt + ' | ' if self.msgctxt else ''}{self.msgid!r}"


def _unquote(text: str) -> str:
    text = text.strip()
    assert len(text) >= 2, f"not a PO string: {text!r}"
    assert text[0] == text[-1] == '"', f"not a PO string: {text!r}"
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(0)), text[1:-1])


def parse_po(text: str) -> list[Entry]:
    """A minimal PO reader: enough for catalogs written by gettext's own tools.

    Obsolete entries (`#~`) are skipped; the header (empty msgid) is returned as the first entry.
    """
    entries: list[Entry] = []
    current = Entry()
    started = False  # the current entry has seen a keyword
    target: tuple[str, int] | None = None  # the field continuation lines append to

    def finish() -> None:
        nonlocal current, started, target
        if started:
            entries.append(current)
        current, started, target = Entry(), False, None

    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            finish()
            continue
        if line.startswith("#~"):
            continue
        if line.startswith("#,"):
            if started:
                finish()
            current.flags.update(flag.strip() for flag in line[2:].split(",") if flag.strip())
            continue
        if line.startswith("#"):
            continue
        if line.startswith('"'):
            assert target is not None, f"line {number}: a string continues nothing"
            name, index = target
            if name == "msgstr":
                current.msgstr[index] += _unquote(line)
            else:
                setattr(current, name, (getattr(current, name) or "") + _unquote(line))
            continue
        keyword, _, value = line.partition(" ")
        if keyword == "msgctxt" or (keyword == "msgid" and started and current.msgstr):
            finish()  # a new entry without a blank line before it
        match = re.fullmatch(r"msgstr\[(\d+)\]", keyword)
        if keyword in ("msgctxt", "msgid", "msgid_plural"):
            setattr(current, keyword, _unquote(value))
            target = (keyword, 0)
        elif keyword == "msgstr" or match:
            index = int(match.group(1)) if match else 0
            current.msgstr[index] = _unquote(value)
            target = ("msgstr", index)
        else:
            raise AssertionError(f"line {number}: unexpected {raw!r}")
        started = True
    finish()
    return entries


def _catalog(path: Path | None = None) -> tuple[Entry, list[Entry]]:
    path = path or PO
    entries = parse_po(path.read_text(encoding="utf-8"))
    assert entries, f"{path} is empty"
    header, *messages = entries
    assert header.msgid == "", f"{path} does not start with a header"
    return header, messages


def _placeholders(text: str) -> list[str]:
    return sorted(_PLACEHOLDER.findall(text.replace("%%", "")))


def test_there_is_one_french_catalog_the_project_one() -> None:
    assert PO.is_file(), f"missing {PO}"
    catalogs = sorted(p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("django.po"))
    assert catalogs == ["locale/fr/LC_MESSAGES/django.po"], catalogs


def test_the_header_declares_french_utf8_and_its_plural_rule() -> None:
    header, _ = _catalog()
    fields = dict(line.split(":", 1) for line in header.msgstr[0].splitlines() if ":" in line)
    assert fields["Language"].strip() == "fr"
    assert "charset=UTF-8" in fields["Content-Type"]
    assert fields["Plural-Forms"].strip() == "nplurals=2; plural=(n > 1);"


def test_every_entry_is_translated() -> None:
    _, messages = _catalog()
    assert messages
    untranslated = [
        m.label
        for m in messages
        if not m.msgstr
        or any(not text for text in m.msgstr.values())
        or (m.msgid_plural is not None and sorted(m.msgstr) != [0, 1])
    ]
    assert untranslated == [], f"untranslated in {PO.name}: {untranslated}"


def test_no_entry_is_fuzzy() -> None:
    _, messages = _catalog()
    fuzzy = [m.label for m in messages if "fuzzy" in m.flags]
    assert fuzzy == [], f"fuzzy (unchecked) in {PO.name}: {fuzzy}"


def test_translations_keep_the_placeholders() -> None:
    _, messages = _catalog()
    broken = []
    for m in messages:
        sources = [m.msgid] if m.msgid_plural is None else [m.msgid, m.msgid_plural]
        for index, text in sorted(m.msgstr.items()):
            source = sources[min(index, len(sources) - 1)]
            if text and _placeholders(text) != _placeholders(source):
                broken.append((m.label, index))
    assert broken == [], f"placeholders changed in: {broken}"


def test_the_compiled_catalog_matches_the_po() -> None:
    assert MO.is_file(), f"missing {MO}: run compilemessages -l fr"
    _, messages = _catalog()
    expected: dict[object, str] = {}
    for m in messages:
        if "fuzzy" in m.flags or not all(m.msgstr.values()):
            continue  # msgfmt leaves these out
        msgid = m.msgid if m.msgctxt is None else f"{m.msgctxt}\x04{m.msgid}"
        if m.msgid_plural is None:
            expected[msgid] = m.msgstr[0]
        else:
            expected.update({(msgid, i): text for i, text in m.msgstr.items()})
    with MO.open("rb") as handle:
        # GNUTranslations keeps every message of the .mo in its (undeclared) _catalog dict.
        compiled = dict(vars(gettext.GNUTranslations(handle))["_catalog"])
    compiled.pop("", None)  # the header
    assert sorted(map(str, set(expected) - set(compiled))) == [], "in the .po, not in the .mo"
    assert sorted(map(str, set(compiled) - set(expected))) == [], "in the .mo, not in the .po"
    stale = sorted(str(key) for key in expected if compiled[key] != expected[key])
    assert stale == [], f"the .mo is older than the .po for: {stale}: run compilemessages -l fr"


def _django_catalog_fr() -> dict[str, str]:
    """Django's own French words (core, contrib apps) and django-otp's, without context."""
    import django
    import django_otp

    words: dict[str, str] = {}
    roots = [Path(django.__file__).parent, Path(django_otp.__file__).parent]
    for root in roots:
        for po in sorted(root.glob("**/locale/fr/LC_MESSAGES/django.po")):
            for entry in parse_po(po.read_text(encoding="utf-8")):
                if entry.msgid and entry.msgctxt is None and entry.msgstr.get(0):
                    words.setdefault(entry.msgid, entry.msgstr[0])
    return words


def test_the_project_catalog_leaves_djangos_own_words_alone() -> None:
    # Our catalog is searched first (LOCALE_PATHS): a msgid Django's admin also uses would
    # replace its word on every admin page ("Change" became "Changer" on its buttons). Where
    # we mean something else, our msgid carries a context (the language switch's "Change").
    ours = [e for e in parse_po(PO.read_text(encoding="utf-8")) if e.msgid and not e.msgctxt]
    django_words = _django_catalog_fr()
    clashes = sorted(
        f"{e.msgid!r}: ours {e.msgstr.get(0)!r}, Django {django_words[e.msgid]!r}"
        for e in ours
        if e.msgid in django_words and e.msgstr.get(0) != django_words[e.msgid]
    )
    assert clashes == []
    with translation.override("fr"):
        assert translation.gettext("Change") == "Modification"  # Django admin's own word
        assert translation.pgettext("apply the chosen language", "Change") == "Changer"
        assert translation.gettext("Care relationship") == "Prise en charge"
    with translation.override("en"):
        assert translation.gettext("Change") == "Change"


@pytest.mark.skipif(shutil.which("xgettext") is None, reason="gettext tools not installed")
def test_the_catalog_has_every_string_of_the_source(tmp_path, settings, monkeypatch) -> None:
    # makemessages writes next to the sources, so run it on a copy with an empty locale folder.
    copy = tmp_path / "vigie"
    shutil.copytree(
        PACKAGE,
        copy,
        ignore=shutil.ignore_patterns("locale", "static", "__pycache__", "*.pyc"),
    )
    (copy / "locale").mkdir()
    settings.LOCALE_PATHS = [copy / "locale"]
    monkeypatch.chdir(copy)
    call_command(
        "makemessages", locale=["fr"], ignore_patterns=IGNORE, no_obsolete=True, verbosity=0
    )
    fresh = {m.key for m in _catalog(copy / "locale" / "fr" / "LC_MESSAGES" / "django.po")[1]}
    ours = {m.key for m in _catalog()[1]}
    assert sorted(map(str, fresh - ours)) == [], "source strings missing from the catalog"
    assert sorted(map(str, ours - fresh)) == [], "catalog entries no longer in the source"
