"""Issue 15, part 1, whole system: being reachable from outside is the exposure.

Real `vigie serve` and `vigie guard run` in a `clinic` network namespace, real nftables, the
guard's outside-in probe run in an `outside` namespace (its vantage point), as in
tests/test_guard_drill.py. Two cases the listener snapshot and Vigie's own table cannot see
as an exposure by themselves:

- perimeter forwarding (the incident): a third namespace is the clinic's router, LAN on one
  side, "internet" on the other. Someone adds a DNAT from its outside address to the
  portal's port, with masquerade, so the clinic sees the router's LAN address: a source the
  policy allows. Nothing changed on the clinic host; the probe must raise the critical
  exposure alert and lock the portal down within one probe interval;
- a port opened beyond the policy: `python3 -m http.server` serving a folder on the clinic
  host. The probe (not only the listener snapshot) must report that port reachable from
  outside, by number.

Latencies are printed and written to test-artifacts/guard-drill-exposure.json.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.browser.live import ARTIFACTS, HttpClient, Installation, free_port
from tests.test_guard_drill import Drill, _epoch, can_connect
from vigie.guard.testing import Host, delete_netns, link, make_netns, netns_supported

pytestmark = [pytest.mark.slow, pytest.mark.netns, pytest.mark.sqlite_only]

PROBE_INTERVAL = 10.0
# The bound: an exposure is alarmed within one probe interval at its maximum.
DETECTION_BOUND = 30.0
MEASURED: dict[str, float] = {}


@dataclass
class Site:
    drill: Drill
    # Where outsiders reach the portal: the router's outside address, or the clinic itself.
    public_address: str
    router: Host | None = None


def _write_policy(path: Path, *, port: int, base_url: str, sources: str, outside: str) -> None:
    path.write_text(
        f"""
[guard]
snapshot_interval = "5s"
probe_interval = "{PROBE_INTERVAL:g}s"
lockdown_on_exposure = true
# exposure_mode is left out on purpose: internal is the default.

[maintenance]
ports = [{port}]

[[listener]]
name = "portal"
address = "0.0.0.0"
port = {port}
exposure = "public"
sources = ["{sources}"]

[probe]
base_urls = ["{base_url}"]
vantage = ["ip", "netns", "exec", "{outside}"]
sample_size = 2
""",
        encoding="utf-8",
    )


def _in(host: Host, *argv: str, script: str | None = None) -> None:
    subprocess.run(host.argv(*argv), input=script, text=True, check=True, timeout=30)


@contextlib.contextmanager
def _site(*, perimeter: bool) -> Iterator[Site]:
    reason = netns_supported()
    if reason is not None:
        pytest.fail(f"the exposure drill needs network namespaces: {reason}")
    names = [make_netns("vclinic"), make_netns("voutside")]
    if perimeter:
        names.append(make_netns("vrouter"))
    clinic_ns, outside_ns = names[0], names[1]
    root = Path(tempfile.mkdtemp(prefix="vigie-exposure-"))
    hosts: list[Host] = []
    drill: Drill | None = None
    try:
        router: Host | None = None
        if perimeter:
            router_ns = names[2]
            clinic_address, router_lan = link(clinic_ns, router_ns)
            router_wan, outside_address = link(router_ns, outside_ns)
            router = Host(router_ns, router_wan)
            hosts.append(router)
            _in(router, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
            public_address = router_wan
            # The clinic's LAN: the router's inside address is in it, as in the incident.
            sources = f"{router_lan.rsplit('.', 1)[0]}.0/24"
        else:
            clinic_address, outside_address = link(clinic_ns, outside_ns)
            public_address = clinic_address
            # The clinic's own network (none of the drill's addresses).
            sources = "192.0.2.0/24"
        clinic = Host(clinic_ns, clinic_address)
        outside = Host(outside_ns, outside_address)
        hosts += [clinic, outside]
        port = free_port()
        policy = root / "vigie-policy.toml"
        _write_policy(
            policy,
            port=port,
            base_url=f"http://{public_address}:{port}",
            sources=sources,
            outside=outside_ns,
        )
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("VIGIE_") and k not in {"DATABASE_URL", "DJANGO_SETTINGS_MODULE"}
        }
        env.update(
            VIGIE_HOME=str(root / "home"),
            VIGIE_MODE="demo",
            PYTHONUNBUFFERED="1",
            VIGIE_POLICY_FILE=str(policy),
            VIGIE_ALLOWED_HOSTS=f"127.0.0.1,localhost,{clinic_address},{public_address}",
        )
        installation = Installation(root=root, env=env)
        installation.seed()
        drill = Drill(installation, clinic, outside, port)
        drill.start(
            "serve", "serve", "--host", "0.0.0.0", "--port", str(port), "--workers", "1",
            "--threads", "4",
        )  # fmt: skip
        drill.wait_for(
            "vigie serve answers inside the clinic",
            lambda: clinic.call(can_connect, "127.0.0.1", port),
            60,
        )
        drill.start_guard()
        yield Site(drill, public_address, router)
    finally:
        if drill is not None:
            for name in list(drill.processes):
                drill.kill(name, signal.SIGKILL)
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "guard-drill-exposure.json").write_text(
            json.dumps(MEASURED, indent=2) + "\n", encoding="utf-8"
        )
        for host in hosts:
            host.close()
        for name in names:
            delete_netns(name)


def _start_in_clinic(drill: Drill, name: str, *argv: str) -> None:
    """A process that is not Vigie, on the clinic host; the drill kills it at the end."""
    log = (drill.installation.root / f"{name}.log").open("ab")
    drill.processes[name] = subprocess.Popen(
        drill.clinic.argv(*argv),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def _probe_rounds(drill: Drill) -> int:
    return int(drill.rows("SELECT count(DISTINCT round_id) FROM guard_proberesult")[0][0])


def _wait_for_a_quiet_round(drill: Drill) -> None:
    """At least one complete probe round stored, and no exposure so far."""
    drill.wait_for("a first probe round", lambda: _probe_rounds(drill) >= 1, 60)
    leaks = drill.rows("SELECT url, detail FROM guard_proberesult WHERE verdict = 'leak'")
    assert leaks == [], leaks
    assert drill.rows("SELECT lockdown FROM guard_guardstate")[0:1] in ([], [(0,)])


def _exposure_alerts(drill: Drill, since: float, needle: str) -> list[str]:
    return [s for s, _details in drill.alerts("guard.probe.exposure", since) if needle in s]


def _round_spacing(drill: Drill) -> float:
    """Seconds between the starts of the last probe rounds: interval + round duration."""
    starts = sorted(
        _epoch(at) for (at,) in drill.rows("SELECT DISTINCT checked_at FROM guard_proberesult")
    )
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    return max(gaps) if gaps else 0.0


def test_perimeter_forwarding_is_caught_as_an_exposure_within_one_probe_interval() -> None:
    with _site(perimeter=True) as site:
        drill, router = site.drill, site.router
        assert router is not None
        port, clinic = drill.port, drill.clinic
        _wait_for_a_quiet_round(drill)
        # Before the mistake the outside world reaches nothing at the clinic's public address.
        assert not drill.outside.call(can_connect, site.public_address, port)

        # The contractor's mistake, on the router only: forward the portal's port inside.
        t_forward = time.time()
        _in(
            router,
            "nft",
            "-f",
            "-",
            script=f"""
table ip perimeter {{
    chain prerouting {{
        type nat hook prerouting priority dstnat;
        ip daddr {site.public_address} tcp dport {port} dnat to {clinic.address}:{port}
    }}
    chain postrouting {{
        type nat hook postrouting priority srcnat;
        ip daddr {clinic.address} tcp dport {port} masquerade
    }}
}}
""",
        )
        # It is a real exposure: a stranger gets the portal's login page through the router,
        # and the clinic sees the router's LAN address, a source the policy allows.
        stranger = HttpClient(f"http://{site.public_address}:{port}")
        login = drill.outside.call(stranger.request, "GET", "/accounts/login/")
        assert login.status == 200
        assert b"password" in login.body.lower()

        latency = drill.wait_for(
            "the critical exposure alert",
            lambda: bool(_exposure_alerts(drill, t_forward, f"port {port}")),
            DETECTION_BOUND + 5,
        )
        MEASURED["perimeter_forwarding_alert_seconds"] = round(latency, 3)
        print(f"perimeter forwarding → critical exposure alert in {latency:.2f} s")
        assert latency <= DETECTION_BOUND
        severity = drill.rows(
            "SELECT severity FROM alerts_alert WHERE kind = 'guard.probe.exposure'"
        )
        assert severity
        assert {s for (s,) in severity} == {"critical"}
        leak = drill.rows(
            "SELECT detail FROM guard_proberesult WHERE verdict = 'leak' AND url = ?",
            f"tcp://{site.public_address}:{port}",
        )
        assert leak, "no probe result names the forwarded port"
        # The detail is in the installation's language (French here): check the facts only.
        assert f"{port}" in leak[0][0], leak
        # The policy's response: lockdown, and an audit event.
        locked = drill.wait_for(
            "lockdown engaged",
            lambda: drill.rows("SELECT lockdown FROM guard_guardstate")[0:1] == [(1,)],
            5,
        )
        MEASURED["perimeter_forwarding_lockdown_seconds"] = round(latency + locked, 3)
        # The event is appended after the alert has gone out to its channels: wait for it.
        drill.wait_for(
            "the exposure's audit event",
            lambda: (
                drill.rows(
                    "SELECT count(*) FROM audit_auditevent WHERE action = 'guard.probe.exposure'"
                )[0][0]
                > 0
            ),
            10,
        )
        # Nothing on the clinic host moved: no drift alarm explains it, only the probe.
        assert not drill.alerts("guard.drift", t_forward)
        MEASURED["probe_round_spacing_seconds"] = round(_round_spacing(drill), 3)
        print("exposure drill measurements:", json.dumps(MEASURED))


def test_a_port_opened_beyond_the_policy_is_reported_by_the_probe() -> None:
    with _site(perimeter=False) as site:
        drill = site.drill
        _wait_for_a_quiet_round(drill)
        folder = drill.installation.root / "maintenance-notes"
        folder.mkdir()
        (folder / "notes.txt").write_text("upgrade checklist\n", encoding="utf-8")
        other = free_port()

        t_open = time.time()
        _start_in_clinic(
            drill, "http-server", "python3", "-m", "http.server", str(other),
            "--bind", "0.0.0.0", "--directory", str(folder),
        )  # fmt: skip
        leak_url = f"tcp://{site.public_address}:{other}"
        latency = drill.wait_for(
            "the probe reports the port",
            lambda: bool(
                drill.rows(
                    "SELECT 1 FROM guard_proberesult WHERE verdict = 'leak' AND url = ?",
                    leak_url,
                )
            ),
            DETECTION_BOUND + 5,
        )
        MEASURED["extra_port_probe_seconds"] = round(latency, 3)
        print(f"python3 -m http.server on port {other} → probe leak in {latency:.2f} s")
        assert latency <= DETECTION_BOUND
        assert drill.outside.call(can_connect, site.public_address, other)
        detail = drill.rows(
            "SELECT detail FROM guard_proberesult WHERE verdict = 'leak' AND url = ?", leak_url
        )[0][0]
        # Who listens there, as psutil names it (the detail is in the installation's language).
        assert "python" in detail
        assert f"{other}" in detail
        drill.wait_for(
            "the critical alert names the port",
            lambda: bool(_exposure_alerts(drill, t_open, f"port {other}")),
            5,
        )
        print("exposure drill measurements:", json.dumps(MEASURED))
