"""`vigie serve` skips collectstatic only while its stamp matches sources and STATIC_ROOT."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import override_settings

from vigie.ops import static_stamp


@pytest.fixture
def collected(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "static"
    with override_settings(STATIC_ROOT=str(root), VIGIE_HOME=tmp_path):
        static_stamp.collect()
        yield root


def _a_source_file() -> Path:
    from django.conf import settings

    return next(Path(settings.STATICFILES_DIRS[0]).rglob("*.css"))


def test_it_is_in_step_right_after_a_collection(collected: Path) -> None:
    assert static_stamp.stamp_path().is_file()
    # Never where it would be served.
    assert not list(collected.rglob(static_stamp.STAMP_NAME))
    assert static_stamp.in_step()


def test_it_is_not_in_step_without_a_stamp(tmp_path: Path) -> None:
    with override_settings(STATIC_ROOT=str(tmp_path / "never-collected"), VIGIE_HOME=tmp_path):
        assert not static_stamp.in_step()


def test_a_changed_source_file_means_collect_again(collected: Path) -> None:
    source = _a_source_file()
    stat = source.stat()
    try:
        os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        assert not static_stamp.in_step()
    finally:
        os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert static_stamp.in_step()


def test_a_collected_file_removed_or_edited_means_collect_again(collected: Path) -> None:
    css = next(collected.rglob("*.css"))
    css.write_bytes(css.read_bytes() + b"/* edited */")
    assert not static_stamp.in_step()
    css.unlink()
    assert not static_stamp.in_step()


def test_another_set_of_apps_means_collect_again(collected: Path) -> None:
    with override_settings(INSTALLED_APPS=["django.contrib.staticfiles"]):
        assert not static_stamp.in_step()


def test_a_corrupt_stamp_means_collect_again(collected: Path) -> None:
    static_stamp.stamp_path().write_text("{not json", encoding="utf-8")
    assert not static_stamp.in_step()


def test_two_nodes_collecting_at_once_both_start(tmp_path: Path) -> None:
    # Nodes of a group on a shared VIGIE_HOME, started together: with one fixed temporary
    # name, one node's rename found the file already moved by the other and it did not start.
    import threading

    root = tmp_path / "static"
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def node() -> None:
        try:
            start.wait()
            static_stamp.collect()
        except BaseException as exc:  # the failure itself is what the test reports
            errors.append(exc)

    with override_settings(STATIC_ROOT=str(root), VIGIE_HOME=tmp_path):
        threads = [threading.Thread(target=node) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert errors == []
        assert static_stamp.in_step()
    # No temporary file left beside the stamp.
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == [static_stamp.STAMP_NAME]
