"""Retention keeps what it promises, and pruning never removes a blob a kept snapshot needs."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta

import pytest
from django.core.management import CommandError, call_command
from hypothesis import given
from hypothesis import strategies as st

from vigie.audit.checkpoints import load_signing_key
from vigie.backup.create import create
from vigie.backup.destination import DELETING_PREFIX, Destination, snapshot_time
from vigie.backup.retention import prune, select_kept
from vigie.backup.verify import verify_snapshot
from vigie.records.testing import make_document
from vigie.vault import get_keyring

from .conftest import Clinic

START = datetime(2026, 1, 1, tzinfo=UTC)


def _id(moment: datetime, n: int) -> str:
    return f"{moment:%Y%m%dT%H%M%SZ}-{n:06x}"


snapshot_sets = st.lists(
    st.integers(min_value=0, max_value=120 * 24 * 3600), min_size=1, max_size=60, unique=True
).map(lambda offsets: [_id(START + timedelta(seconds=s), i) for i, s in enumerate(offsets)])


@given(snapshot_sets, st.integers(0, 10), st.integers(0, 6))
def test_it_keeps_the_newest_of_each_recent_day_and_week(ids, daily, weekly) -> None:
    kept = select_kept(ids, daily, weekly)
    assert max(ids) in kept  # the newest always stays
    assert len(kept) <= daily + weekly + 1
    newest_per_day: dict[date, str] = {}
    newest_per_week: dict[tuple[int, int], str] = {}
    for snapshot_id in ids:
        moment = snapshot_time(snapshot_id)
        day, week = moment.date(), (moment.isocalendar()[0], moment.isocalendar()[1])
        newest_per_day[day] = max(newest_per_day.get(day, snapshot_id), snapshot_id)
        newest_per_week[week] = max(newest_per_week.get(week, snapshot_id), snapshot_id)
    for day in sorted(newest_per_day, reverse=True)[:daily]:
        assert newest_per_day[day] in kept
    for week in sorted(newest_per_week, reverse=True)[:weekly]:
        assert newest_per_week[week] in kept
    # Nothing is kept that is not the newest of a day or a week it was kept for.
    assert kept <= set(newest_per_day.values()) | set(newest_per_week.values())


def test_prune_drops_old_snapshots_and_only_the_blobs_nobody_needs(clinic: Clinic) -> None:
    old = create(clinic.dest, now=START).snapshot_id
    # A document deleted after the first backup: only the old snapshot holds its blob.
    gone = next(iter(clinic.documents))
    from vigie.records.models import Document

    Document.objects.filter(pk=gone).delete()
    make_document(clinic.patient, b"%PDF-1.4 later")
    newer = create(clinic.dest, now=START + timedelta(days=10)).snapshot_id
    newest = create(clinic.dest, now=START + timedelta(days=11)).snapshot_id
    result = prune(clinic.dest, keep_daily=2, keep_weekly=0, public=load_signing_key().public_key())
    assert result.removed == [old]
    assert sorted(result.kept) == [newer, newest]
    assert result.removed_blobs == 1
    dest = Destination(clinic.dest)
    assert not dest.blobs.exists(gone)
    for snapshot_id in (newer, newest):
        report = verify_snapshot(
            clinic.dest,
            public_key=load_signing_key().public_key(),
            keyring=get_keyring(),
            snapshot_id=snapshot_id,
        )
        assert report.problems == []


def test_prune_finishes_a_removal_a_crash_interrupted(clinic: Clinic) -> None:
    kept = create(clinic.dest, now=START).snapshot_id
    dest = Destination(clinic.dest)
    # What a prune killed inside rmtree leaves: a renamed, half-removed snapshot folder.
    condemned = dest.snapshots_dir / f"{DELETING_PREFIX}20260101T000000Z-abcdef"
    condemned.mkdir()
    (condemned / "database.sqlite3").write_bytes(b"half")
    result = prune(clinic.dest, keep_daily=1, keep_weekly=0, public=load_signing_key().public_key())
    assert not condemned.exists()
    assert result.removed_partials == 1
    assert result.kept == [kept]
    assert dest.snapshot_ids() == [kept]


def test_backup_create_with_retention_prunes_after_the_new_snapshot(clinic: Clinic) -> None:
    old = create(clinic.dest, now=START).snapshot_id
    older_leftover = Destination(clinic.dest).snapshots_dir / f"{DELETING_PREFIX}{old}-x"
    older_leftover.mkdir()
    out = io.StringIO()
    call_command(
        "backup", "create", str(clinic.dest), "--keep-daily", "1", "--keep-weekly", "0", stdout=out
    )
    newest = out.getvalue().split()[1].rstrip(":")
    assert Destination(clinic.dest).snapshot_ids() == [newest]
    assert "kept 1 snapshot(s), removed 1 and 0 blob(s)" in out.getvalue()
    assert "cleared 1 unfinished folder(s)" in out.getvalue()
    assert not older_leftover.exists()


def test_prune_refuses_a_negative_retention(clinic: Clinic) -> None:
    create(clinic.dest, now=START)
    with pytest.raises(CommandError, match="must be 0 or more") as raised:
        call_command("backup", "prune", str(clinic.dest), "--keep-daily", "-1")
    assert raised.value.returncode == 2
    assert len(Destination(clinic.dest).snapshot_ids()) == 1
