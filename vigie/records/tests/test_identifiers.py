from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vigie.records.identifiers import (
    InvalidIdentifier,
    nir_key,
    validate_ipp,
    validate_nir,
)

# A NIR body: sex, year, month, department (incl. Corsica), commune, order.
_bodies = st.builds(
    lambda sex, year, month, dept, commune, order: (
        f"{sex}{year:02d}{month:02d}{dept}{commune:03d}{order:03d}"
    ),
    st.sampled_from("12"),
    st.integers(0, 99),
    st.integers(1, 12),
    st.one_of(st.integers(1, 95).map(lambda d: f"{d:02d}"), st.sampled_from(["2A", "2B"])),
    st.integers(1, 990),
    st.integers(1, 999),
)


def with_key(body: str) -> str:
    return f"{body}{nir_key(body):02d}"


def test_it_accepts_a_known_valid_nir() -> None:
    # 1 84 12 76 451 089 → key 97 - (1841276451089 mod 97) = 46
    assert validate_nir("1 84 12 76 451 089 46") == "184127645108946"


def test_it_handles_corsican_departments() -> None:
    body = "28503" + "2A" + "001" + "012"  # woman born March 1985 in Corse-du-Sud
    nir = with_key(body)
    expected = 97 - int(body.replace("2A", "19")) % 97
    assert nir.endswith(f"{expected:02d}")
    assert validate_nir(nir.lower()) == nir


@given(_bodies)
def test_it_accepts_every_body_with_its_computed_key(body: str) -> None:
    assert validate_nir(with_key(body)) == with_key(body)


@given(_bodies, st.integers(1, 96))
def test_it_refuses_a_mistyped_key(body: str, delta: int) -> None:
    wrong = (nir_key(body) + delta) % 97 or 97
    if wrong == nir_key(body):
        return
    with pytest.raises(InvalidIdentifier, match="control key"):
        validate_nir(f"{body}{wrong:02d}")


@given(_bodies, st.data())
def test_it_detects_any_single_digit_typo_in_the_body(body: str, data: st.DataObject) -> None:
    nir = with_key(body)
    digits = [i for i, c in enumerate(nir[:13]) if c.isdigit()]
    position = data.draw(st.sampled_from(digits))
    replacement = data.draw(st.sampled_from([d for d in "0123456789" if d != nir[position]]))
    typo = nir[:position] + replacement + nir[position + 1 :]
    try:
        validate_nir(typo)
    except InvalidIdentifier:
        return
    pytest.fail(f"typo {typo} of {nir} was accepted")


@pytest.mark.parametrize(
    "raw",
    ["", "123", "3841276451089 46", "1841376451089XX", "18412764510894", "1841276451089466"],
)
def test_it_refuses_malformed_nirs(raw: str) -> None:
    with pytest.raises(InvalidIdentifier):
        validate_nir(raw)


@pytest.mark.parametrize("raw", ["", " ", "a b", "../etc", "x" * 65, "é123"])
def test_it_refuses_malformed_ipps(raw: str) -> None:
    with pytest.raises(InvalidIdentifier):
        validate_ipp(raw)


def test_it_keeps_a_valid_ipp() -> None:
    assert validate_ipp(" IPP0001234 ") == "IPP0001234"


@pytest.mark.django_db
def test_the_test_patients_keep_valid_and_distinct_ins_past_a_thousand(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The whole suite makes more than a thousand patients in one process: the helper's INS
    # once grew a digit there, and a test far down the run got a refusal instead of its patient.
    from itertools import count

    from vigie.records import testing

    monkeypatch.setattr(testing, "_seq", count(995))
    made = [testing.make_patient(with_ins=True).ins for _ in range(12)]
    assert len(set(made)) == len(made)
    for ins in made:
        assert ins is not None
        assert validate_nir(ins) == ins
