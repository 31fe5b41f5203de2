"""`vigie-policy.toml`: what may be exposed, to whom, and how the guard watches it.

Read with the standard library's TOML parser and validated here, field by field: a typo
must stop the guard with a message naming the key, never silently weaken the perimeter.
Unknown keys are errors for the same reason.

    [guard]
    snapshot_interval = "10s"      # full ruleset + sockets snapshot (≤ 10 s)
    probe_interval = "30s"         # outside-in probe round (≤ 30 s)
    heartbeat_interval = "60s"
    heartbeat_url = "https://monitor.example/hb/vigie"   # optional
    lockdown_on_exposure = true
    exposure_mode = "internal"     # internal (default) or public: see below

    [maintenance]
    max_ttl = "4h"                 # no window may last longer (default 4 h)
    ports = [8443]                 # ports a window may open

    [[listener]]                   # declared exposure: every listening socket must match one
    name = "portal"
    address = "0.0.0.0"
    port = 8443
    process = "granian"            # optional: the process name must start with this
    exposure = "public"            # public (sources below may reach it), local (loopback),
                                   # or outside (reachable from anywhere, on purpose)
    sources = ["192.168.10.0/24"]  # who may always reach a public listener

    [probe]
    base_urls = ["https://portal.clinic.example:8443"]
    vantage = ["ssh", "probe@vps.example"]   # command prefix that runs the fetch outside
    sample_size = 6                # real document URLs per round
    ca_file = "/etc/vigie/ca.pem"  # optional, for a private CA

`exposure_mode` says what being reachable from the probe's vantage point means. `internal`
(the default): the portal is for the allowed sources only, so any TCP connection that
succeeds from outside, to a guarded port or to any port the host listens on, is the
exposure, whatever made it possible (a perimeter that forwards the port looks harmless from
the host itself). `public`: the portal is deliberately on the internet; only its own port
may answer, and only as the portal does. Either way, a listener declared `exposure =
"outside"` (an administrators' SSH, say) may answer from outside: Vigie's table does not
guard it and the probe does not alarm when it answers.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_MAX_TTL = 4 * 3600
INTERNAL = "internal"
PUBLIC = "public"
EXPOSURE_MODES = (INTERNAL, PUBLIC)
LISTENER_EXPOSURES = ("public", "local", "outside")
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


class PolicyError(ValueError):
    """The policy file is missing, unreadable or wrong; the message names the key."""


def parse_duration(text: str | int | float, *, key: str = "duration") -> float:
    """'90s', '5m', '4h', '1.5h', '250ms' or a number of seconds → seconds (> 0)."""
    if isinstance(text, bool):
        raise PolicyError(f"{key}: expected a duration like '30s', '5m' or '4h', got {text!r}")
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        match = _DURATION_RE.match(str(text))
        if not match:
            raise PolicyError(f"{key}: expected a duration like '30s', '5m' or '4h', got {text!r}")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise PolicyError(f"{key}: must be more than zero, got {text!r}")
    return seconds


@dataclass(frozen=True)
class Listener:
    name: str
    address: str
    port: int
    exposure: str  # "public" (guarded, sources only), "local" (loopback) or "outside"
    process: str = ""
    sources: tuple[str, ...] = ()

    def matches(self, address: str, port: int, process: str) -> bool:
        if port != self.port:
            return False
        if self.process and not process.startswith(self.process):
            return False
        if ipaddress.ip_address(self.address).is_unspecified:  # a wildcard bind
            return True
        return ipaddress.ip_address(address) == ipaddress.ip_address(self.address)


@dataclass(frozen=True)
class Policy:
    listeners: tuple[Listener, ...]
    maintenance_ports: tuple[int, ...]
    max_ttl: float = DEFAULT_MAX_TTL
    snapshot_interval: float = 10.0
    probe_interval: float = 30.0
    heartbeat_interval: float = 60.0
    heartbeat_url: str = ""
    lockdown_on_exposure: bool = True
    exposure_mode: str = INTERNAL
    probe_base_urls: tuple[str, ...] = ()
    probe_vantage: tuple[str, ...] = ()
    probe_sample_size: int = 6
    probe_ca_file: str = ""
    path: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def public_ports(self) -> tuple[int, ...]:
        """Ports the firewall guards: public listeners' and any a window may open."""
        ports = {lst.port for lst in self.listeners if lst.exposure == "public"}
        return tuple(sorted(ports | set(self.maintenance_ports)))

    @property
    def outside_ports(self) -> dict[int, str]:
        """Ports declared reachable from outside on purpose → the listener's name."""
        return {lst.port: lst.name for lst in self.listeners if lst.exposure == "outside"}

    @property
    def allowed_sources(self) -> tuple[str, ...]:
        sources: set[str] = set()
        for listener in self.listeners:
            if listener.exposure == "public":
                sources.update(listener.sources)
        return tuple(sorted(sources))


_SECTIONS = {"guard", "maintenance", "listener", "probe"}
_GUARD_KEYS = {
    "snapshot_interval",
    "probe_interval",
    "heartbeat_interval",
    "heartbeat_url",
    "lockdown_on_exposure",
    "exposure_mode",
}
_MAINTENANCE_KEYS = {"max_ttl", "ports"}
_LISTENER_KEYS = {"name", "address", "port", "process", "exposure", "sources"}
_PROBE_KEYS = {"base_urls", "vantage", "sample_size", "ca_file"}


def _table(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise PolicyError(f"[{key}] must be a table")
    return value


def _no_unknown(table: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise PolicyError(
            f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(allowed))})"
        )


def _port(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise PolicyError(f"{key}: expected a port number 1-65535, got {value!r}")
    return int(value)


def _str_list(value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise PolicyError(f"{key}: expected a list of strings, got {value!r}")
    return tuple(value)


def _interval(table: dict[str, Any], key: str, default: float, at_most: float | None) -> float:
    if key not in table:
        return default
    seconds = parse_duration(table[key], key=f"guard.{key}")
    if at_most is not None and seconds > at_most:
        raise PolicyError(f"guard.{key}: at most {at_most:g} s, got {table[key]!r}")
    return seconds


def _listener(raw: Any, index: int) -> Listener:
    where = f"listener[{index}]"
    if not isinstance(raw, dict):
        raise PolicyError(f"{where}: must be a table")
    _no_unknown(raw, _LISTENER_KEYS, where)
    for required in ("name", "address", "port", "exposure"):
        if required not in raw:
            raise PolicyError(f"{where}: missing {required!r}")
    name = str(raw["name"])
    where = f"listener {name!r}"
    try:
        address = str(ipaddress.ip_address(raw["address"]))
    except ValueError:
        raise PolicyError(f"{where}.address: not an IP address: {raw['address']!r}") from None
    exposure = raw["exposure"]
    if exposure not in LISTENER_EXPOSURES:
        raise PolicyError(f"{where}.exposure: 'public', 'local' or 'outside', got {exposure!r}")
    sources = _str_list(raw.get("sources", []), f"{where}.sources")
    for source in sources:
        try:
            ipaddress.ip_network(source, strict=False)
        except ValueError:
            raise PolicyError(f"{where}.sources: not an address or network: {source!r}") from None
    if exposure == "local":
        if not ipaddress.ip_address(address).is_loopback:
            raise PolicyError(
                f"{where}: a local listener must bind a loopback address, not {address}"
            )
        if sources:
            raise PolicyError(f"{where}: a local listener takes no sources")
    if exposure == "outside":
        if ipaddress.ip_address(address).is_loopback:
            raise PolicyError(
                f"{where}: a loopback address cannot be reached from outside; declare it local"
            )
        if sources:
            raise PolicyError(
                f"{where}: an outside listener takes no sources (anyone may reach it)"
            )
    process = raw.get("process", "")
    if not isinstance(process, str):
        raise PolicyError(f"{where}.process: expected a process name, got {process!r}")
    return Listener(
        name=name,
        address=address,
        port=_port(raw["port"], f"{where}.port"),
        exposure=exposure,
        process=process,
        sources=sources,
    )


def parse_policy(data: dict[str, Any], *, path: str = "") -> Policy:
    _no_unknown(data, _SECTIONS, "policy")
    guard = _table(data, "guard")
    _no_unknown(guard, _GUARD_KEYS, "[guard]")
    maintenance = _table(data, "maintenance")
    _no_unknown(maintenance, _MAINTENANCE_KEYS, "[maintenance]")
    probe = _table(data, "probe")
    _no_unknown(probe, _PROBE_KEYS, "[probe]")

    raw_listeners = data.get("listener", [])
    if not isinstance(raw_listeners, list) or not raw_listeners:
        raise PolicyError("policy: declare at least one [[listener]] (the portal)")
    listeners = tuple(_listener(raw, i) for i, raw in enumerate(raw_listeners))
    names = [lst.name for lst in listeners]
    if len(set(names)) != len(names):
        raise PolicyError("policy: two [[listener]] tables have the same name")

    public = sorted({lst.port for lst in listeners if lst.exposure == "public"})
    for listener in listeners:
        if listener.exposure == "outside" and listener.port in public:
            raise PolicyError(
                f"listener {listener.name!r}: port {listener.port} is declared reachable from "
                "outside and guarded by a public listener at once"
            )
    ports_raw = maintenance.get("ports", public)
    if not isinstance(ports_raw, list):
        raise PolicyError(f"maintenance.ports: expected a list of ports, got {ports_raw!r}")
    ports = tuple(_port(p, "maintenance.ports") for p in ports_raw)
    max_ttl = parse_duration(maintenance.get("max_ttl", DEFAULT_MAX_TTL), key="maintenance.max_ttl")

    heartbeat_url = guard.get("heartbeat_url", "")
    if heartbeat_url and not str(heartbeat_url).startswith(("http://", "https://")):
        raise PolicyError(f"guard.heartbeat_url: an http(s) URL, got {heartbeat_url!r}")
    lockdown = guard.get("lockdown_on_exposure", True)
    if not isinstance(lockdown, bool):
        raise PolicyError(f"guard.lockdown_on_exposure: true or false, got {lockdown!r}")

    mode = guard.get("exposure_mode", INTERNAL)
    if mode not in EXPOSURE_MODES:
        raise PolicyError(f"guard.exposure_mode: 'internal' or 'public', got {mode!r}")

    base_urls = _str_list(probe.get("base_urls", []), "probe.base_urls")
    for url in base_urls:
        if not url.startswith(("http://", "https://")):
            raise PolicyError(f"probe.base_urls: an http(s) URL, got {url!r}")
    vantage = _str_list(probe.get("vantage", []), "probe.vantage")
    sample = probe.get("sample_size", 6)
    if isinstance(sample, bool) or not isinstance(sample, int) or not 0 <= sample <= 100:
        raise PolicyError(f"probe.sample_size: a number 0-100, got {sample!r}")
    ca_file = probe.get("ca_file", "")
    if not isinstance(ca_file, str):
        raise PolicyError(f"probe.ca_file: a file path, got {ca_file!r}")

    outside = {lst.port: lst.name for lst in listeners if lst.exposure == "outside"}
    for port in ports:
        if port in outside:
            raise PolicyError(
                f"maintenance.ports: port {port} is declared reachable from outside "
                f"(listener {outside[port]!r}); a window cannot open it further"
            )

    return Policy(
        listeners=listeners,
        maintenance_ports=ports,
        max_ttl=max_ttl,
        snapshot_interval=_interval(guard, "snapshot_interval", 10.0, 10.0),
        probe_interval=_interval(guard, "probe_interval", 30.0, 30.0),
        heartbeat_interval=_interval(guard, "heartbeat_interval", 60.0, 60.0),
        heartbeat_url=str(heartbeat_url),
        lockdown_on_exposure=lockdown,
        exposure_mode=mode,
        probe_base_urls=base_urls,
        probe_vantage=vantage,
        probe_sample_size=sample,
        probe_ca_file=ca_file,
        path=path,
    )


def load_policy(path: str | Path) -> Policy:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyError(f"{path}: no such policy file") from None
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read the policy file ({exc.strerror})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{path}: not valid TOML ({exc})") from None
    try:
        return parse_policy(data, path=str(path))
    except PolicyError as exc:
        raise PolicyError(f"{path}: {exc}") from None
