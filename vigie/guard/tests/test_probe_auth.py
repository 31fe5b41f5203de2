"""The probe signature on its own: its life, and that nothing made without the key passes.
The attacks through HTTP (replay, alteration, expiry) are in test_canary.py."""

from __future__ import annotations

import time

from hypothesis import given, settings
from hypothesis import strategies as st

from vigie.guard import probe_auth, probe_vantage


def test_a_signature_is_good_for_30_seconds_and_no_more() -> None:
    now = int(time.time())
    made = probe_auth.sign("GET", "/x", now=now)
    assert probe_auth.check("GET", "/x", made, now=now) == probe_auth.Check.VALID
    assert probe_auth.check("GET", "/x", made, now=now + 30) == probe_auth.Check.VALID
    assert probe_auth.check("GET", "/x", made, now=now + 31) == probe_auth.Check.EXPIRED
    longer = probe_auth.sign("GET", "/x", now=now, valid_for=31)
    assert probe_auth.check("GET", "/x", longer, now=now) == probe_auth.Check.TOO_LONG
    # The fetcher's whole round, its last request included, fits in the signature's life.
    assert (
        probe_vantage.ROUND_DEADLINE + probe_vantage.REQUEST_TIMEOUT < probe_auth.MAX_VALID_SECONDS
    )


@given(value=st.text(max_size=200), target=st.text(max_size=50))
@settings(max_examples=300, deadline=None)
def test_no_header_without_the_key_passes(value: str, target: str) -> None:
    assert probe_auth.check("GET", target, value) != probe_auth.Check.VALID
