"""Test helpers: a throwaway network namespace for real nftables and conntrack.

Tests never touch the host's ruleset: `netns` creates a namespace (loopback up), points
`vigie.guard.nft` at it, and deletes it afterwards. Tests that need it are marked `netns`
and need root (CAP_NET_ADMIN) with Debian's `nftables`, `conntrack` and `iproute2`.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from vigie.guard import nft


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


@pytest.fixture
def netns() -> Iterator[str]:
    reason = netns_supported()
    if reason is not None:
        # CI runs as root with the packages installed: there this fails, never skips.
        pytest.fail(f"this test needs a network namespace: {reason}")
    name = make_netns()
    previous, nft.NETNS = nft.NETNS, name
    try:
        yield name
    finally:
        nft.NETNS = previous
        delete_netns(name)
