"""Vigie's nftables table, with real packets between two network namespaces.

`clinic` holds the table and a listening socket; `outside` connects over a veth pair. These
are the kernel facts everything else in the guard relies on: a guarded port is closed to
strangers, a window opens it for one address and closes by itself, and the session opened
through a window does not outlive it.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from vigie.guard import nft
from vigie.guard.policy import Policy, parse_policy
from vigie.guard.testing import Host, delete_netns, link, make_netns

pytestmark = pytest.mark.netns

GUARDED = 8443
UNGUARDED = 9000


@dataclass
class Pair:
    clinic: Host
    outside: Host
    servers: list[socket.socket]


def _listen(port: int) -> socket.socket:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", port))
    server.listen(1024)  # the polls below must never fill the accept queue
    server.settimeout(0.2)
    return server


def _connect(address: str, port: int) -> socket.socket | None:
    try:
        return socket.create_connection((address, port), timeout=1)
    except OSError:
        return None


def _reaches(host: Host, address: str, port: int) -> bool:
    sock = host.call(_connect, address, port)
    if sock is None:
        return False
    sock.close()
    return True


def _reset_by_firewall(session: socket.socket) -> bool:
    """Send on an open connection: True if the answer is a TCP reset (the session is cut)."""
    session.settimeout(2)
    try:
        session.sendall(b"again")
        session.recv(4)
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return False


def _accept(server: socket.socket) -> socket.socket | None:
    try:
        conn, _ = server.accept()
    except OSError:
        return None
    return conn


def _policy(sources: list[str] | None = None) -> Policy:
    return parse_policy(
        {
            "listener": [
                {
                    "name": "portal",
                    "address": "0.0.0.0",
                    "port": GUARDED,
                    "exposure": "public",
                    "sources": sources or ["192.0.2.0/24"],
                }
            ]
        }
    )


@pytest.fixture
def pair(netns: str) -> Iterator[Pair]:
    # `netns` (the clinic) is where nft runs; a second namespace plays the outside world.
    outside_ns = make_netns("vgo")
    clinic_host: Host | None = None
    outside_host: Host | None = None
    try:
        clinic_address, outside_address = link(netns, outside_ns)
        clinic_host = Host(netns, clinic_address)
        outside_host = Host(outside_ns, outside_address)
        servers = [clinic_host.call(_listen, port) for port in (GUARDED, UNGUARDED)]
        yield Pair(clinic_host, outside_host, servers)
        for server in servers:
            server.close()
    finally:
        for host in (clinic_host, outside_host):
            if host is not None:
                host.close()
        delete_netns(outside_ns)


def test_without_the_table_the_port_is_open_so_the_test_can_fail(pair: Pair) -> None:
    assert _reaches(pair.outside, pair.clinic.address, GUARDED)


def test_stranger_cannot_reach_a_guarded_port(pair: Pair) -> None:
    nft.install(_policy())
    assert not _reaches(pair.outside, pair.clinic.address, GUARDED)
    # Vigie guards only its own ports; the host's other services are not its business.
    assert _reaches(pair.outside, pair.clinic.address, UNGUARDED)


def test_allowed_source_reaches_the_portal(pair: Pair) -> None:
    nft.install(_policy([f"{pair.outside.address}/32"]))
    assert _reaches(pair.outside, pair.clinic.address, GUARDED)


def test_window_opens_for_one_address_and_the_kernel_closes_it(pair: Pair) -> None:
    nft.install(_policy())
    nft.add_window(pair.outside.address, GUARDED, 2.0)
    opened = time.monotonic()
    session = pair.outside.call(_connect, pair.clinic.address, GUARDED)
    assert session is not None
    served = pair.clinic.call(_accept, pair.servers[0])
    assert served is not None
    session.sendall(b"ping")
    assert served.recv(4) == b"ping"

    deadline = opened + 5
    while _reaches(pair.outside, pair.clinic.address, GUARDED):
        assert time.monotonic() < deadline, "the window did not expire"
        time.sleep(0.05)
    assert 1.0 <= time.monotonic() - opened <= 3.0
    assert nft.list_windows() == []
    # The session opened through the window is cut as well: the next packet gets a reset.
    assert _reset_by_firewall(session)
    session.close()
    served.close()


def test_reinstalling_the_table_keeps_open_windows(pair: Pair) -> None:
    nft.install(_policy())
    nft.add_window(pair.outside.address, GUARDED, 60)
    nft.install(_policy())
    [window] = nft.list_windows()
    assert window.source == pair.outside.address
    assert window.port == GUARDED
    assert window.expires_in is not None
    assert 50 <= window.expires_in <= 60
    assert _reaches(pair.outside, pair.clinic.address, GUARDED)


def test_removing_a_window_closes_the_port_at_once(pair: Pair) -> None:
    nft.install(_policy())
    nft.add_window(pair.outside.address, GUARDED, 60)
    assert _reaches(pair.outside, pair.clinic.address, GUARDED)
    assert nft.remove_window(pair.outside.address, GUARDED) is True
    assert not _reaches(pair.outside, pair.clinic.address, GUARDED)
    # Removing it again is not an error: the kernel may already have expired it.
    assert nft.remove_window(pair.outside.address, GUARDED) is False


def _nft_in(host: Host, script: str) -> None:
    subprocess.run(
        host.argv("nft", "-f", "-"), input=script, text=True, check=True, capture_output=True
    )


def _device(host: Host) -> tuple[str, str]:
    """The name and MAC address of `host`'s end of the veth pair."""
    links = json.loads(
        subprocess.run(
            ["ip", "-n", host.name, "-j", "link", "show"], check=True, capture_output=True
        ).stdout
    )
    veth = next(link for link in links if link["ifname"] != "lo")
    return str(veth["ifname"]), str(veth["address"])


def test_accept_in_another_table_does_not_override_vigies_reset(pair: Pair) -> None:
    # Why the guard answers an accept elsewhere with drift, not lockdown: every base chain
    # on a hook runs, an accept ends only its own, and Vigie's reset is final. Tried before
    # Vigie's chain (a lower priority, an earlier hook, the device's ingress) and after it.
    nft.install(_policy())
    device, _mac = _device(pair.clinic)
    _nft_in(
        pair.clinic,
        f"""
table ip early {{
    chain in {{ type filter hook input priority -300; policy accept; accept; }}
    chain pre {{ type filter hook prerouting priority -300; policy accept; accept; }}
}}
table inet late {{
    chain in {{ type filter hook input priority 100; policy accept; accept; }}
}}
table netdev edge {{
    chain in {{ type filter hook ingress device "{device}" priority -500; policy accept; accept; }}
}}
""",
    )

    assert not _reaches(pair.outside, pair.clinic.address, GUARDED)
    assert _reaches(pair.outside, pair.clinic.address, UNGUARDED)


def test_source_rewritten_before_vigies_chain_gets_past_it(pair: Pair) -> None:
    # The change elsewhere that can expose (so findings.py calls it critical): rewrite a
    # stranger's address into an allowed one before Vigie judges it, and back on the way out.
    nft.install(_policy())
    assert not _reaches(pair.outside, pair.clinic.address, GUARDED)
    device, _mac = _device(pair.clinic)
    _peer, peer_mac = _device(pair.outside)
    disguise = "192.0.2.9"  # inside the policy's allowed 192.0.2.0/24
    subprocess.run(
        ["ip", "-n", pair.clinic.name, "route", "add", f"{disguise}/32", "dev", device], check=True
    )
    subprocess.run(
        ["ip", "-n", pair.clinic.name, "neigh", "add", disguise, "lladdr", peer_mac, "dev", device],
        check=True,
    )
    _nft_in(
        pair.clinic,
        f"""
table netdev sneak {{
    chain in {{
        type filter hook ingress device "{device}" priority 0; policy accept;
        ip saddr {pair.outside.address} ip saddr set {disguise}
    }}
    chain out {{
        type filter hook egress device "{device}" priority 0; policy accept;
        ip daddr {disguise} ip daddr set {pair.outside.address}
    }}
}}
""",
    )

    assert _reaches(pair.outside, pair.clinic.address, GUARDED)


def test_reinstalling_repairs_a_tampered_table_at_once(pair: Pair) -> None:
    policy = _policy()
    script = nft.install(policy)
    _nft_in(pair.clinic, "insert rule inet vigie input accept\n")
    assert _reaches(pair.outside, pair.clinic.address, GUARDED)

    assert nft.install(policy) == script
    assert not _reaches(pair.outside, pair.clinic.address, GUARDED)


def test_missing_nft_is_refused_not_pretended(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda *args, **kwargs: None)
    with pytest.raises(nft.NftUnavailable, match="nftables"):
        nft.check_available()
