"""Fuzzing the HL7 entry point: whatever the bytes, `handle()` answers a well-formed ACK.

Bounded for CI: about 300 examples per property, well under a minute in all.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vigie.intake.hl7.handler import handle
from vigie.intake.hl7.server import Framer
from vigie.intake.hl7.testing import EB, SB, Oru, ack_fields, ed_segment, frame, small_pdf
from vigie.intake.models import MllpSender

BASE = [
    Oru().encode(),
    Oru(version="2.3", charset="8859/1").encode(),
    Oru(observations=[ed_segment(small_pdf())]).encode(),
]
# Characters that matter to an HL7 reader: separators, escapes, terminators, non-ASCII.
SPECIAL = st.sampled_from(
    [
        b"|",
        b"^",
        b"~",
        b"\\",
        b"&",
        b"\r",
        b"\n",
        b"\x0b",
        b"\x1c",
        b"\\X",
        b"\\.sp",
        b"\xc3",
        b"\xe9",
        b'""',
    ]
)
FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
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
        elif action == "truncate":
            del data[position:]
    return bytes(data)


@st.composite
def structured(draw: st.DrawFn) -> bytes:
    """Messages built from random fields: reaches deeper than byte flips."""
    text = st.text(
        alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30
    ).map(lambda s: s.replace("\r", ""))
    oru = Oru(
        control_id=draw(text),
        version=draw(st.sampled_from(["2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", ""])),
        charset=draw(st.sampled_from(["UNICODE UTF-8", "8859/1", "ASCII", "", "X"])),
        encoding_characters=draw(st.sampled_from(["^~\\&", "^~\\", "^^\\&", "#*$%"])),
        ins=draw(st.sampled_from(["", "285037500100132", "285037500100133", "x"])),
        ipp=draw(text),
        ipp_authority=draw(text),
        name=draw(text),
        birth_date=draw(st.sampled_from(["19850314", "", "1985", "abc", "20240230"])),
        service=draw(text),
        observed_at=draw(st.sampled_from(["202611020830", "", "20261302", "2026110208304512"])),
        observations=draw(
            st.lists(
                st.builds(
                    lambda t, v, flag: f"OBX|1|{t}|X^{v}^L||{v}|u|1-2|{flag}|||F",
                    st.sampled_from(["NM", "ST", "TX", "SN", "CE", "ED", "ZZ", ""]),
                    text,
                    st.sampled_from(["H", "LL", "", "N"]),
                ),
                max_size=4,
            )
        ),
    )
    return oru.text().encode("utf-8", errors="replace")


def _check(raw: bytes) -> None:
    sender, _created = MllpSender.objects.get_or_create(
        name="BIOMED", defaults={"source_system": "BIOMED"}
    )
    reply = handle(raw, sender=sender)
    fields = ack_fields(reply.ack)
    assert fields["code"] in ("AA", "AE", "AR")
    assert fields["code"] == reply.code
    if reply.code == "AA":
        assert reply.document_id or reply.pending_id
    else:
        # A refusal always says why: in MSA-3 and in ERR.
        assert fields["text"]
        assert fields["error_code"] in {"100", "101", "102", "103", "200", "203", "207"}
        assert fields["error_code"] != "207", (
            f"an internal error for {raw[:200]!r}: {fields['text']}"
        )


@pytest.mark.django_db
@FUZZ
@given(raw=mutated())
def test_mutated_messages_always_get_an_ack(vault_home: Path, raw: bytes) -> None:
    _check(raw)


@pytest.mark.django_db
@FUZZ
@given(raw=structured())
def test_random_fields_always_get_an_ack(vault_home: Path, raw: bytes) -> None:
    _check(raw)


@FUZZ
@given(
    payloads=st.lists(
        st.binary(max_size=200).map(lambda b: b.replace(SB, b"").replace(EB, b"")), max_size=5
    ),
    cuts=st.lists(st.integers(1, 50), max_size=20),
)
def test_the_framer_returns_exactly_the_frames_sent(payloads: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(frame(p) for p in payloads)
    framer = Framer(max_bytes=10_000)
    got: list[bytes] = []
    position = 0
    for cut in [*cuts, len(stream)]:
        got += [f.payload for f in framer.feed(stream[position : position + cut])]
        position += cut
    got += [f.payload for f in framer.feed(stream[position:])]
    assert got == payloads
