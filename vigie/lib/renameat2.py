"""`renameat2(RENAME_NOREPLACE)`: a rename that fails instead of replacing the target.

Python's `os.rename` replaces an existing target without a word, and the standard library
has no `renameat2`. The hot folder gives a file back to the shared depot, where the sender may
have put a new file under the same name at any moment: only the kernel can check "the name is
free" and take it in one step. glibc has exported `renameat2` since 2.28 (Debian 10); the
kernel call exists since Linux 3.15 on ext4, XFS, Btrfs and tmpfs.
"""

from __future__ import annotations

import ctypes
import errno
import os
from functools import cache

RENAME_NOREPLACE = 1


@cache
def _renameat2() -> ctypes._CFuncPtr:  # type: ignore[name-defined]
    libc = ctypes.CDLL(None, use_errno=True)
    function = libc.renameat2
    function.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    function.restype = ctypes.c_int
    return function


def rename_noreplace(src_dir_fd: int, src: str, dst_dir_fd: int, dst: str) -> None:
    """Rename `src` (in `src_dir_fd`) to `dst` (in `dst_dir_fd`); FileExistsError if `dst`
    exists, other OSErrors as `os.rename` raises them. Never replaces anything."""
    result = _renameat2()(
        src_dir_fd, os.fsencode(src), dst_dir_fd, os.fsencode(dst), RENAME_NOREPLACE
    )
    if result != 0:
        code = ctypes.get_errno()
        if code == errno.EEXIST:
            raise FileExistsError(code, os.strerror(code), dst)
        raise OSError(code, os.strerror(code), src)
