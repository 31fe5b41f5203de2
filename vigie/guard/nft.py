"""The nftables table Vigie owns (`inet vigie`) and the commands that change it.

Vigie never edits anyone else's tables. Its own table has one input chain that guards the
public ports of the policy: loopback, the policy's allowed sources, and the open maintenance
windows pass; everything else aimed at a guarded port gets a TCP reset. The chain does not
accept "established" traffic first, on purpose: when a window's element expires, the very
next packet of a connection that was open through it is refused too, so the kernel cuts
the session even if Vigie is dead (the conntrack flush afterwards is hygiene, not safety).

Windows are elements `address . port` of the sets `window4`/`window6`, each with its own
kernel timeout: the kernel removes them at expiry, whatever happens to Vigie.

Everything goes through the `nft` and `conntrack` programs (Debian's `nftables` and
`conntrack` packages), in atomic scripts (`nft -f -`): a rule set is replaced in one
transaction or not at all.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

from vigie.guard.policy import Policy

TABLE_FAMILY = "inet"
TABLE_NAME = "vigie"
TABLE = f"{TABLE_FAMILY} {TABLE_NAME}"
WINDOW_SETS = ("window4", "window6")
# Vigie's input chain runs at `filter - 10`; a chain that runs before it (a lower number on
# the same hook, or an earlier hook) sees packets Vigie has not judged yet.
CHAIN_PRIORITY = -10
_TIMEOUT_SECONDS = 30.0
# One element of a window set in `nft list set` output: "10.1.2.3 . 8443 timeout 5s expires 4s820ms".
_ELEMENT_RE = re.compile(
    r"(?P<source>[0-9a-fA-F:.]+) \. (?P<port>\d+)"
    r"(?: timeout (?P<timeout>[0-9dhms]+))?(?: expires (?P<expires>[0-9dhms]+))?"
)
_NFT_DURATION_PART_RE = re.compile(r"(\d+)(ms|d|h|m|s)")
_NFT_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_DELETED_RE = re.compile(r"(\d+) flow entries have been deleted")


# Tests run the real nft inside a network namespace of their own, never on the host's
# ruleset: they set this to the namespace's name (see vigie/guard/testing.py).
NETNS: str | None = None


class NftUnavailable(RuntimeError):
    """nftables cannot be used here (not installed, not permitted); the message says why."""


class NftError(RuntimeError):
    """`nft` refused a command; the message is nft's own."""


@dataclass(frozen=True)
class WindowElement:
    source: str
    port: int
    # Seconds until the kernel removes it (None if nft did not say).
    expires_in: float | None


def _binary(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if path is None:
        package = {"nft": "nftables", "ip": "iproute2"}.get(name, name)
        raise NftUnavailable(
            f"`{name}` is not installed (Debian package `{package}`): maintenance windows "
            "need nftables, and Vigie will not pretend to open or close a port without it"
        )
    return path


def _command(name: str) -> list[str]:
    binary = _binary(name)
    if NETNS is None:
        return [binary]
    return [_binary("ip"), "netns", "exec", NETNS, binary]


def run(args: list[str], *, script: str | None = None) -> str:
    """Run nft with `args` (and a script on stdin); return its output or raise."""
    try:
        proc = subprocess.run(  # noqa: S603  (fixed program, arguments built here)
            [*_command("nft"), *args],
            input=script,
            capture_output=True,
            text=True,
            timeout=_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise NftError(f"nft {' '.join(args)} did not answer in {_TIMEOUT_SECONDS:g} s") from None
    if proc.returncode != 0:
        message = (proc.stderr or proc.stdout).strip().splitlines()
        text = message[0] if message else f"exit status {proc.returncode}"
        if "Operation not permitted" in (proc.stderr or ""):
            raise NftUnavailable(
                "nftables refused: operation not permitted (the guard and `vigie maintenance` "
                "need CAP_NET_ADMIN, e.g. run as root or with AmbientCapabilities=CAP_NET_ADMIN)"
            )
        raise NftError(f"nft: {text}")
    return proc.stdout


def check_available() -> None:
    """Raise NftUnavailable unless nft is installed and may read the ruleset."""
    run(["list", "tables"])


def _split_sources(sources: tuple[str, ...]) -> tuple[list[str], list[str]]:
    v4: list[str] = []
    v6: list[str] = []
    for source in sources:
        network = ipaddress.ip_network(source, strict=False)
        (v4 if network.version == 4 else v6).append(str(network))
    return v4, v6


def _elements(values: list[str]) -> str:
    return f"elements = {{ {', '.join(values)} }}" if values else ""


def _window_element(source: str, port: int, ttl: float | None = None) -> str:
    address = ipaddress.ip_address(source)
    timeout = f" timeout {max(int(ttl * 1000), 1)}ms" if ttl is not None else ""
    return f"{address} . {int(port)}{timeout}"


def _set_for(source: str) -> str:
    return "window4" if ipaddress.ip_address(source).version == 4 else "window6"


def render_table(policy: Policy, keep: list[WindowElement] | None = None) -> str:
    """The script that (re)creates Vigie's table in one transaction, windows kept."""
    v4, v6 = _split_sources(policy.allowed_sources)
    ports = ", ".join(str(p) for p in policy.public_ports)
    keep = keep or []
    kept4 = [
        _window_element(w.source, w.port, w.expires_in)
        for w in keep
        if _set_for(w.source) == "window4" and (w.expires_in or 0) > 0
    ]
    kept6 = [
        _window_element(w.source, w.port, w.expires_in)
        for w in keep
        if _set_for(w.source) == "window6" and (w.expires_in or 0) > 0
    ]
    return f"""\
add table {TABLE}
delete table {TABLE}
table {TABLE} {{
    set guarded_ports {{
        type inet_service
        {_elements(ports.split(", ") if ports else [])}
    }}
    set allowed4 {{
        type ipv4_addr
        flags interval
        {_elements(v4)}
    }}
    set allowed6 {{
        type ipv6_addr
        flags interval
        {_elements(v6)}
    }}
    set window4 {{
        type ipv4_addr . inet_service
        flags timeout
        {_elements(kept4)}
    }}
    set window6 {{
        type ipv6_addr . inet_service
        flags timeout
        {_elements(kept6)}
    }}
    chain input {{
        type filter hook input priority {CHAIN_PRIORITY}; policy accept;
        iif "lo" accept
        tcp dport != @guarded_ports accept
        ip saddr @allowed4 accept
        ip6 saddr @allowed6 accept
        ip saddr . tcp dport @window4 accept
        ip6 saddr . tcp dport @window6 accept
        meta l4proto tcp reject with tcp reset
    }}
}}
"""


def table_exists() -> bool:
    try:
        run(["list", "table", TABLE_FAMILY, TABLE_NAME])
    except NftError:
        return False
    return True


def install(policy: Policy) -> str:
    """Create (or re-create) Vigie's table from the policy, keeping open windows; the script.

    One `nft -f` transaction: the table is replaced whole or not at all, so a repair never
    leaves a half-built chain behind (nor a moment without the reject rule once it runs).
    Window elements still in the kernel are kept with their remaining time; the windows
    module removes any that Vigie did not open.
    """
    script = render_table(policy, list_windows())
    run(["-f", "-"], script=script)
    return script


def add_window(source: str, port: int, ttl: float) -> None:
    run(
        ["-f", "-"],
        script=f"add element {TABLE} {_set_for(source)} {{ {_window_element(source, port, ttl)} }}\n",
    )


def replace_window(source: str, port: int, ttl: float) -> None:
    """Give an open window a new timeout (delete and re-add in one transaction)."""
    name = _set_for(source)
    script = (
        f"delete element {TABLE} {name} {{ {_window_element(source, port)} }}\n"
        f"add element {TABLE} {name} {{ {_window_element(source, port, ttl)} }}\n"
    )
    run(["-f", "-"], script=script)


def remove_window(source: str, port: int) -> bool:
    """Delete the window's element; False if the kernel had already removed it."""
    try:
        run(
            ["-f", "-"],
            script=f"delete element {TABLE} {_set_for(source)} {{ {_window_element(source, port)} }}\n",
        )
    except NftError as exc:
        if "No such file or directory" in str(exc) or "does not exist" in str(exc):
            return False
        raise
    return True


def list_windows() -> list[WindowElement]:
    """The window elements the kernel holds right now (expired ones excluded).

    Read from nft's text output: its JSON rounds `expires` down to whole seconds and still
    lists elements that expired but were not yet garbage-collected.
    """
    windows: list[WindowElement] = []
    for name in WINDOW_SETS:
        try:
            text = run(["list", "set", TABLE_FAMILY, TABLE_NAME, name])
        except NftError:
            continue
        for match in _ELEMENT_RE.finditer(text):
            expires = match.group("expires")
            windows.append(
                WindowElement(
                    source=match.group("source"),
                    port=int(match.group("port")),
                    expires_in=parse_nft_duration(expires) if expires else None,
                )
            )
    return windows


def parse_nft_duration(text: str) -> float:
    """nft's durations: '1d2h3m4s500ms', '288ms', '2h' → seconds."""
    parts = _NFT_DURATION_PART_RE.findall(text)
    if not parts or "".join(f"{n}{u}" for n, u in parts) != text:
        raise NftError(f"nft: unexpected duration {text!r}")
    return sum(int(number) * _NFT_UNITS[unit] for number, unit in parts)


def ruleset() -> dict[str, Any]:
    """The whole ruleset as nft's JSON."""
    data: dict[str, Any] = json.loads(run(["-j", "list", "ruleset"]))
    return data


def flush_conntrack(source: str, port: int | None = None) -> int:
    """Delete connection-tracking entries from `source` (to `port`); the number deleted."""
    args = [*_command("conntrack"), "-D", "-s", str(ipaddress.ip_address(source))]
    if port is not None:
        args += ["-p", "tcp", "--dport", str(int(port))]
    proc = subprocess.run(  # noqa: S603  (fixed program, validated address)
        args, capture_output=True, text=True, timeout=_TIMEOUT_SECONDS, check=False
    )
    # conntrack exits 1 when nothing matched; that is a success here.
    if proc.returncode not in (0, 1):
        raise NftError(f"conntrack: {(proc.stderr or '').strip() or proc.returncode}")
    match = _DELETED_RE.search(proc.stderr or "")
    return int(match.group(1)) if match else 0


def monitor() -> subprocess.Popen[str]:
    """`nft monitor ruleset`: one line per change, as it happens (the caller reads stdout)."""
    return subprocess.Popen(  # noqa: S603  (fixed program and arguments)
        [*_command("nft"), "monitor", "ruleset"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        bufsize=1,
    )
