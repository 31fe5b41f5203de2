"""Test helpers: a throwaway network namespace for real nftables and conntrack.

Tests never touch the host's ruleset: `network_namespace()` (the root conftest's `netns`
fixture) creates a namespace (loopback up), points `vigie.guard.nft` at it, and deletes it
afterwards. Tests that need it are marked `netns`
and need root (CAP_NET_ADMIN) with Debian's `nftables`, `conntrack` and `iproute2`.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import shutil
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

from vigie.guard import nft

_T = TypeVar("_T")
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL("libc.so.6", use_errno=True)


def enter_netns(name: str) -> None:
    """Move the calling thread (only it) into network namespace `name` (setns(2))."""
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns({name}): {os.strerror(errno)}")
    finally:
        os.close(fd)


class Host:
    """A test host: worker threads that live in one network namespace. A socket opened by
    `call(...)` belongs to that namespace for its whole life, whoever uses it later."""

    def __init__(self, name: str, address: str) -> None:
        self.name = name
        self.address = address
        self.pool = ThreadPoolExecutor(max_workers=4, initializer=enter_netns, initargs=(name,))

    def call(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        return self.pool.submit(fn, *args, **kwargs).result(timeout=120)

    def argv(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def link(ns_a: str, ns_b: str) -> tuple[str, str]:
    """Join two namespaces with a veth pair on a random /24; their addresses (a, b)."""
    subnet = f"10.{secrets.randbelow(200) + 20}.{secrets.randbelow(250)}"
    tag = secrets.token_hex(3)
    dev_a, dev_b = f"vga{tag}", f"vgb{tag}"
    _ip("link", "add", dev_a, "type", "veth", "peer", "name", dev_b)
    for ns, dev, host in ((ns_a, dev_a, 1), (ns_b, dev_b, 2)):
        _ip("link", "set", dev, "netns", ns)
        _ip("-n", ns, "addr", "add", f"{subnet}.{host}/24", "dev", dev)
        _ip("-n", ns, "link", "set", dev, "up")
    return f"{subnet}.1", f"{subnet}.2"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def netns_supported() -> str | None:
    """Why namespaces cannot be used here, or None if they can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "nft", "conntrack"):
        if shutil.which(tool) is None and shutil.which(tool, path="/usr/sbin:/sbin") is None:
            return f"`{tool}` is not installed"
    return None


def make_netns(prefix: str = "vg") -> str:
    name = f"{prefix}-{secrets.token_hex(3)}"
    _ip("netns", "add", name)
    _ip("netns", "exec", name, "ip", "link", "set", "lo", "up")
    return name


def delete_netns(name: str) -> None:
    subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30, check=False)


@contextmanager
def network_namespace() -> Iterator[str]:
    """A new namespace that `vigie.guard.nft` works in while inside, deleted after."""
    name = make_netns()
    previous, nft.NETNS = nft.NETNS, name
    try:
        yield name
    finally:
        nft.NETNS = previous
        delete_netns(name)
