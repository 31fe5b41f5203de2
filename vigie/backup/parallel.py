"""Check many items on a few threads, keeping their order: the backup's verification stages.

Hashing, AES-GCM and file I/O release the GIL, so threads keep both cores and the disk busy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

THREADS = 4


def check_each(
    items: Sequence[T],
    check: Callable[[T], str | None],
    problems: list[str],
    progress: Callable[[int, int], None] | None = None,
) -> list[bool]:
    """Run `check` on every item (it returns a problem or None); append the problems in the
    items' order; return, for each item, whether it passed."""
    passed: list[bool] = []
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        for index, problem in enumerate(pool.map(check, items), start=1):
            passed.append(problem is None)
            if problem is not None:
                problems.append(problem)
            if progress is not None:
                progress(index, len(items))
    return passed


def staged(
    progress: Callable[[str, int, int], None] | None, stage: str
) -> Callable[[int, int], None] | None:
    """A (done, total) progress callback reporting under `stage`, or None without progress."""
    if progress is None:
        return None
    return lambda done, total: progress(stage, done, total)
