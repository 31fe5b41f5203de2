"""Fuzzing the HPRIM channel (`receive_file`) with the real database and vault: whatever the
bytes, and wherever the store fails, a file is stored whole (one row, one blob, one sealed
result set, one `ReceivedMessage` per patient) or refused with a reason, never half-stored, never a crash.

Bounded for CI: a few dozen examples per property.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vigie import vault
from vigie.intake.hprim import HprimError, parse
from vigie.intake.hprim.channel import receive_file
from vigie.intake.hprim.testing import TODAY, Report, cases, hprim, make_nir
from vigie.intake.models import ReceivedMessage
from vigie.records.ingest_errors import InvalidDocument, StorageUnavailable
from vigie.records.models import Document, PendingDocument, SealedResults

pytestmark = pytest.mark.django_db

# The corpus's good files, mutated where an HPRIM reader is fragile (as the parser's own fuzz
# does; a test module is never imported by another).
BASE = [raw for raw, facts in cases().values() if "error" not in facts]
SPECIAL = st.sampled_from(
    [b"|", b"\r\n", b"\n", b"****FIN****", b"****FINFICHIER****", b"****LAB****", b"RES|",
     b"TEX|", b"\x0c", b"\xe9", b"\x00", b"31/02/1985", b"1" * 40, b"A" * 600]
)  # fmt: skip
LINE_TEXT = st.text(
    alphabet=st.characters(
        exclude_categories=["Cs"], exclude_characters="\r\n\x0b\x1c\x1d\x1e\x85\u2028\u2029"
    ),
    max_size=30,
)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(BASE)))
    for _ in range(draw(st.integers(1, 6))):
        position = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["insert", "delete", "replace", "truncate"]))
        if action == "insert":
            data[position:position] = draw(st.one_of(SPECIAL, st.binary(max_size=8)))
        elif action == "delete":
            del data[position : position + draw(st.integers(1, 40))]
        elif action == "replace" and position < len(data):
            data[position] = draw(st.integers(0, 255))
        else:
            del data[position:]
    return bytes(data)


FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(autouse=True)
def _env(settings: Any, vault_home: Path) -> None:
    settings.VIGIE_AUDIT_GROUP_COMMIT = False


def _counts() -> tuple[int, int, int, int, int]:
    return (
        Document.objects.count(),
        PendingDocument.objects.count(),
        ReceivedMessage.objects.count(),
        sum(1 for _ in vault.get_store().iter_ids()),
        SealedResults.objects.count(),
    )


@contextmanager
def _store_full_at(call: int) -> Iterator[None]:
    """The vault refuses its `call`-th seal (0: never), as a full disk would."""
    real_seal = vault.seal
    made = 0

    def seal(*args: Any, **kwargs: Any) -> Any:
        nonlocal made
        made += 1
        if made == call:
            raise OSError(28, "No space left on device")
        return real_seal(*args, **kwargs)

    vault.seal = seal
    try:
        yield
    finally:
        vault.seal = real_seal


def _check(raw: bytes, fail_at: int) -> None:
    before = _counts()
    try:
        expected: int | None = len(parse(raw, today=TODAY).patients)
    except HprimError:
        expected = None
    refusal: InvalidDocument | StorageUnavailable | None = None
    try:
        with _store_full_at(fail_at):
            stored = receive_file(
                raw,
                source_system="FUZZ-LAB",
                channel="folder",
                received_as="folder",
                source=uuid.uuid4().hex,  # a fresh source: every example is a first delivery
                audit=lambda row, index: None,
                today=TODAY,
            )
    except (InvalidDocument, StorageUnavailable) as exc:
        refusal = exc
    if refusal is not None:
        assert str(refusal).strip()
        assert _counts() == before, "a refused or failed file left something behind"
        if isinstance(refusal, StorageUnavailable):
            assert expected is not None
            assert 1 <= fail_at <= expected
        return
    assert expected is not None, "a file the parser refuses was stored"
    assert not 1 <= fail_at <= expected, "the store failed, yet the file was answered as stored"
    documents, pending, received, blobs, results = _counts()
    assert len(stored.patients) == expected
    assert (documents + pending - before[0] - before[1]) == expected
    assert received - before[2] == expected
    assert blobs - before[3] == expected
    assert results - before[4] == expected  # every patient's values sealed beside them


@FUZZ
@given(raw=mutated(), fail_at=st.integers(0, 4))
def test_fuzz_mutated_files_are_stored_whole_or_not_at_all(raw: bytes, fail_at: int) -> None:
    _check(raw, fail_at)


# Names a matcher meets: letters of any script, spaces, hyphens, apostrophes, and now and
# then a tab or a form feed (text to the parser, a control character to the matcher).
NAMES = st.text(
    alphabet=st.one_of(
        st.characters(categories=["L", "Zs", "Pd"]), st.sampled_from(["'", "\t", "\x0c"])
    ),
    min_size=1,
    max_size=20,
).filter(str.strip)


@FUZZ
@given(
    families=st.lists(NAMES, min_size=2, max_size=4),
    nir=st.one_of(st.just(make_nir("2850469123045")), LINE_TEXT),
    data=st.data(),
)
def test_fuzz_multi_patient_files_are_stored_whole_or_not_at_all(
    families: list[str], nir: str, data: st.DataObject
) -> None:
    # Names with tabs, form feeds, any script: the matcher may refuse them, never crash;
    # the store may fail at any patient, or not at all.
    raw = hprim([Report(family_name=family, nir=nir) for family in families], charset="utf-8")
    _check(raw, data.draw(st.integers(0, len(families) + 1), label="fail_at"))
