"""The service files in deploy/: systemd units that systemd accepts, hardened, an nginx
example that nginx accepts and that never serves a file itself, and an HAProxy example for a
group of nodes that HAProxy accepts.

`systemd-analyze verify` and `nginx -t` are Debian's own (systemd 252, nginx 1.22 on Debian
12; `.ci/run` installs them when missing). The units are verified as written: the test only
gives them a throw-away root holding an executable where they expect /opt/vigie/bin/vigie.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy_sites import haproxy_binary, haproxy_site, nginx_binary, nginx_site

# Bare environments (no DATABASE_URL) or no database at all: the same on both passes.
pytestmark = pytest.mark.sqlite_only

REPO = Path(__file__).resolve().parent.parent
SYSTEMD = REPO / "deploy" / "systemd"
NGINX_CONF = REPO / "deploy" / "nginx" / "vigie.conf"

DAEMONS = ["vigie-web", "vigie-guard", "vigie-mllp", "vigie-folder", "vigie-audit-watch"]
SERVICES = sorted(p.name for p in SYSTEMD.glob("*.service"))
UNITS = sorted(p.name for p in SYSTEMD.iterdir() if p.suffix in {".service", ".timer"})

# What the issue asks of every unit (value as written in the unit).
HARDENING = {
    "User": "vigie",
    "Group": "vigie",
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "RestrictNamespaces": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "SystemCallFilter": "@system-service",
    "UMask": "0077",
    "EnvironmentFile": "/etc/vigie/vigie.env",
    "StateDirectory": "vigie",
}
# nftables (CAP_NET_ADMIN); naming other users' socket owners in /proc (the other two; the unit
# says why).
GUARD_CAPABILITIES = {"CAP_NET_ADMIN", "CAP_DAC_READ_SEARCH", "CAP_SYS_PTRACE"}


def _unit(name: str) -> dict[str, list[str]]:
    """`Section.Key` → every value given for it, in order (systemd allows repeats)."""
    values: dict[str, list[str]] = {}
    section = ""
    for raw in (SYSTEMD / name).read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        assert not line.endswith("\\"), f"{name}: no continuation lines, please: {line}"
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{name}: not a Key=value line: {line}"
        values.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return values


def _one(unit: dict[str, list[str]], key: str) -> str:
    found = unit.get(f"Service.{key}", [])
    assert len(found) == 1, f"{key}: expected exactly one value, got {found}"
    return found[0]


# --- systemd-analyze verify ---------------------------------------------------------------


def _systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.fail("systemd-analyze is missing: apt-get install systemd (.ci/run does)")
    return found


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root with the host's system units (targets, sockets…) and a stand-in `vigie`."""
    root = tmp_path_factory.mktemp("root")
    host_units = Path("/usr/lib/systemd/system")
    if not host_units.is_dir():
        pytest.fail("no /usr/lib/systemd/system: apt-get install systemd")
    shutil.copytree(host_units, root / "usr/lib/systemd/system", symlinks=True)
    vigie = root / "opt/vigie/bin/vigie"
    vigie.parent.mkdir(parents=True)
    vigie.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    vigie.chmod(0o755)
    (root / "etc/systemd/system").mkdir(parents=True)
    return root


def _verify(root: Path, name: str, text: str) -> subprocess.CompletedProcess[str]:
    (root / "etc/systemd/system" / name).write_text(text, encoding="utf-8")
    env = {**os.environ, "SYSTEMD_LOG_COLOR": "0", "SYSTEMD_PAGER": ""}
    return subprocess.run(
        [_systemd_analyze(), "verify", f"--root={root}", f"/etc/systemd/system/{name}"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def test_the_expected_units_are_there() -> None:
    for daemon in DAEMONS:
        assert f"{daemon}.service" in SERVICES
    assert "vigie-backup.timer" in UNITS
    assert "vigie-backup.service" in SERVICES


@pytest.mark.parametrize("name", UNITS)
def test_systemd_analyze_verify_accepts_the_unit(fake_root: Path, name: str) -> None:
    result = _verify(fake_root, name, (SYSTEMD / name).read_text(encoding="utf-8"))
    # systemd-analyze exits 0 on unknown keys or unparsable values (it only warns): any line
    # of output at all is a failure here.
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0, output
    assert output == "", output


def test_verify_as_run_here_does_catch_mistakes(fake_root: Path) -> None:
    """The check above can fail: a typo and a missing program are both reported."""
    text = (SYSTEMD / "vigie-web.service").read_text(encoding="utf-8")
    typo = _verify(
        fake_root, "vigie-typo.service", text.replace("ProtectHome=yes", "ProtectHom=yes")
    )
    assert "ProtectHom" in typo.stdout + typo.stderr
    missing = _verify(
        fake_root, "vigie-missing.service", text.replace("/opt/vigie/bin/vigie", "/opt/nope/vigie")
    )
    assert missing.returncode != 0
    assert "/opt/nope/vigie" in missing.stdout + missing.stderr


# --- hardening ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SERVICES)
def test_every_service_is_hardened_and_runs_as_vigie(name: str) -> None:
    unit = _unit(name)
    for key, value in HARDENING.items():
        assert _one(unit, key) == value, f"{name}: {key}"
    assert _one(unit, "ExecStart").startswith("/opt/vigie/bin/vigie ")
    assert _one(unit, "SystemCallArchitectures") == "native"
    families = set(_one(unit, "RestrictAddressFamilies").split())
    allowed = {"AF_UNIX", "AF_INET", "AF_INET6"}
    if name == "vigie-guard.service":
        allowed.add("AF_NETLINK")  # nft and conntrack speak netlink
        assert "AF_NETLINK" in families
    assert families <= allowed, f"{name}: {families - allowed}"
    for forbidden in ("PermissionsStartOnly", "RootDirectory", "PrivateNetwork"):
        assert f"Service.{forbidden}" not in unit, f"{name}: {forbidden}"


@pytest.mark.parametrize("name", SERVICES)
def test_only_the_guard_has_capabilities(name: str) -> None:
    unit = _unit(name)
    bounding = set(_one(unit, "CapabilityBoundingSet").split())
    ambient = set(_one(unit, "AmbientCapabilities").split())
    if name == "vigie-guard.service":
        assert bounding == GUARD_CAPABILITIES
        assert ambient == GUARD_CAPABILITIES
    else:
        # Written out empty: an absent CapabilityBoundingSet= means "all of them".
        assert bounding == set(), name
        assert ambient == set(), name


def test_each_service_writes_only_where_it_must() -> None:
    expected = {
        "vigie-web.service": [],
        "vigie-guard.service": [],
        "vigie-mllp.service": [],
        "vigie-folder.service": ["/srv/vigie-depot", "/srv/vigie-intake"],
        "vigie-backup.service": ["/srv/vigie-backup"],
        "vigie-audit-watch.service": [],
    }
    assert set(expected) == set(SERVICES)
    for name, paths in expected.items():
        unit = _unit(name)
        assert unit.get("Service.ReadWritePaths", []) == paths, name
        for path in paths:  # the folder it may write is the one it is told to use
            assert f" {path} " in _one(unit, "ExecStart") + " ", name


# --- keys apart from the data (issue 15) -----------------------------------------------------

CREDENTIALS_DROPIN = SYSTEMD / "vigie-.service.d" / "keys-credentials.conf"


@pytest.mark.parametrize("name", SERVICES)
def test_every_service_keeps_its_keys_outside_its_data(name: str) -> None:
    unit = _unit(name)
    environment = dict(v.split("=", 1) for v in unit["Service.Environment"])
    keys = Path(environment["VIGIE_KEYS_DIR"])
    assert keys == Path("/etc/vigie/keys")
    assert not keys.is_relative_to(environment["VIGIE_HOME"])
    assert not keys.is_relative_to(Path("/var/lib") / _one(unit, "StateDirectory"))


def test_the_credentials_dropin_loads_every_key_by_the_name_vigie_reads() -> None:
    from vigie.vault.layout import KEY_FILE_NAMES

    values = []
    section = ""
    for raw in CREDENTIALS_DROPIN.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line.startswith("["):
            section = line
        elif line and not line.startswith("#"):
            assert section == "[Service]"
            key, _, value = line.partition("=")
            assert key == "LoadCredentialEncrypted", line
            values.append(value)
    names = [value.split(":", 1)[0] for value in values]
    assert sorted(names) == sorted(KEY_FILE_NAMES)
    for value in values:
        name, path = value.split(":", 1)
        assert path == f"/etc/vigie/credentials/{name}.cred"
    assert "systemd-creds encrypt" in CREDENTIALS_DROPIN.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", SERVICES)
def test_systemd_analyze_verify_accepts_each_service_with_the_credentials_dropin(
    fake_root: Path, name: str
) -> None:
    dropin = fake_root / "etc/systemd/system/vigie-.service.d"
    dropin.mkdir(exist_ok=True)
    try:
        (dropin / CREDENTIALS_DROPIN.name).write_text(
            CREDENTIALS_DROPIN.read_text(encoding="utf-8"), encoding="utf-8"
        )
        result = _verify(fake_root, name, (SYSTEMD / name).read_text(encoding="utf-8"))
        output = (result.stdout + result.stderr).strip()
        assert result.returncode == 0, output
        assert output == "", output
        # And systemd does read that drop-in for this unit: a typo in it is reported.
        (dropin / CREDENTIALS_DROPIN.name).write_text(
            "[Service]\nLoadCredentialEncrypte=keyring.json:/x\n", encoding="utf-8"
        )
        typo = _verify(fake_root, name, (SYSTEMD / name).read_text(encoding="utf-8"))
        assert "LoadCredentialEncrypte" in typo.stdout + typo.stderr
    finally:
        shutil.rmtree(dropin)


def test_the_web_server_listens_on_loopback_behind_the_proxy() -> None:
    argv = _one(_unit("vigie-web.service"), "ExecStart").split()
    assert argv[1] == "serve"
    options = dict(zip(argv[2::2], argv[3::2], strict=True))
    assert options == {"--host": "127.0.0.1", "--port": "8000", "--behind-proxy": "127.0.0.1"}


def test_the_other_daemons_run_the_documented_commands() -> None:
    assert _one(_unit("vigie-guard.service"), "ExecStart").split()[1:3] == ["guard", "run"]
    mllp = _one(_unit("vigie-mllp.service"), "ExecStart").split()
    assert mllp[1:3] == ["intake", "mllp"]
    assert mllp[mllp.index("--port") + 1] == "2575"  # above 1024: no capability needed
    folder = _one(_unit("vigie-folder.service"), "ExecStart").split()
    assert folder[1:4] == ["intake", "folder", "/srv/vigie-depot"]
    # done/ and quarantine/ out of the depot, where the drop account cannot reach them.
    assert folder[folder.index("--outbox") + 1] == "/srv/vigie-intake"
    # The only periodic checkpoint writer and runner of the anomaly rules (issue 17).
    assert _one(_unit("vigie-audit-watch.service"), "ExecStart").split()[1:3] == ["audit", "watch"]
    backup = _one(_unit("vigie-backup.service"), "ExecStart").split()
    # On one node of a group at a time (vigie/lib/singleton.py).
    assert backup[1:5] == ["once", "backup", "backup", "create"]
    timer = _unit("vigie-backup.timer")
    assert timer["Timer.OnCalendar"]
    assert timer["Timer.Persistent"] == ["true"]


# --- nginx ------------------------------------------------------------------------------------


def _directives(text: str) -> list[list[str]]:
    """Each directive as its words (comments dropped, blocks flattened)."""
    text = re.sub(r"#[^\n]*", "", text)
    return [words for chunk in re.split(r"[;{}]", text) if (words := chunk.split())]


def test_nginx_accepts_the_example(tmp_path: Path) -> None:
    nginx = nginx_binary()
    if not nginx:
        pytest.fail("nginx is missing: apt-get install nginx-light (.ci/run does)")
    conf = nginx_site(tmp_path, NGINX_CONF.read_text(encoding="utf-8"))
    result = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "test is successful" in output
    assert "[warn]" not in output, output
    assert "[emerg]" not in output, output


def test_nginx_never_serves_a_file_itself() -> None:
    directives = _directives(NGINX_CONF.read_text(encoding="utf-8"))
    serving = {"root", "alias", "try_files", "index", "autoindex", "sendfile"}
    assert [d for d in directives if d[0] in serving] == []
    # The same scan does find them when they are there.
    assert _directives("location /static/ { alias /srv/x/; } # root /y;") == [
        ["location", "/static/"],
        ["alias", "/srv/x/"],
    ]


def test_nginx_forwards_everything_to_vigie_unbuffered_and_uncached() -> None:
    directives = _directives(NGINX_CONF.read_text(encoding="utf-8"))
    by_name: dict[str, list[list[str]]] = {}
    for words in directives:
        by_name.setdefault(words[0], []).append(words[1:])
    # The upstream's one server (the others are `server {` blocks): vigie-web's address.
    assert [args for args in by_name["server"] if args] == [["127.0.0.1:8000"]]
    assert by_name["proxy_pass"] == [["http://vigie"]]
    assert by_name["location"] == [["/"]]  # one location: everything goes to Vigie
    headers = {args[0]: args[1:] for args in by_name["proxy_set_header"]}
    assert headers["X-Forwarded-For"] == ["$remote_addr"]
    assert headers["X-Forwarded-Proto"] == ["$scheme"]
    assert headers["Host"] == ["$host"]
    assert by_name["proxy_buffering"] == [["off"]]
    assert by_name["proxy_cache"] == [["off"]]
    assert ["301", "https://$host$request_uri"] in by_name["return"]
    assert any("443" in args and "ssl" in args for args in by_name["listen"])
    # client_max_body_size matches VIGIE_MAX_DOCUMENT_SIZE's default (256 MiB).
    (size,) = by_name["client_max_body_size"]
    assert size == ["256m"]
    settings_source = (REPO / "vigie" / "settings.py").read_text(encoding="utf-8")
    assert '"VIGIE_MAX_DOCUMENT_SIZE", 256 * 1024 * 1024' in settings_source


def test_the_mllp_unit_listening_beyond_loopback_requires_mutual_tls() -> None:
    from vigie.intake.hl7.server import Settings, exposure_problem

    argv = _one(_unit("vigie-mllp.service"), "ExecStart").split()
    options = dict(zip(argv[3::2], argv[4::2], strict=True))
    settings = Settings(
        host=options["--host"],
        tls_cert=options.get("--tls-cert", ""),
        tls_key=options.get("--tls-key", ""),
        tls_client_ca=options.get("--tls-client-ca", ""),
    )
    assert settings.mutual_tls
    assert exposure_problem(settings) == ""
    # The files it names are readable under ProtectSystem=strict (/etc is read-only).
    assert all(options[o].startswith("/etc/vigie/") for o in ("--tls-cert", "--tls-client-ca"))
    assert "--source" in _one(_unit("vigie-folder.service"), "ExecStart").split()


# --- HAProxy (a group of nodes) ---------------------------------------------------------------

HAPROXY_CONF = REPO / "deploy" / "haproxy" / "vigie.cfg"


def test_haproxy_accepts_the_example(tmp_path: Path) -> None:
    haproxy = haproxy_binary()
    if not haproxy:
        pytest.fail("haproxy is missing: apt-get install haproxy (.ci/run does)")
    haproxy_site(tmp_path, HAPROXY_CONF.read_text(encoding="utf-8"), tmp_path / "admin.sock")
    result = subprocess.run(
        [haproxy, "-c", "-f", str(tmp_path / "haproxy.cfg")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Configuration file is valid" in output
    assert "[WARNING]" not in output, output
    assert "[ALERT]" not in output, output


def test_haproxy_checks_each_node_and_sets_the_forwarded_headers() -> None:
    text = re.sub(r"#[^\n]*", "", HAPROXY_CONF.read_text(encoding="utf-8"))
    # Health: /health, down after two failed checks a second apart.
    assert "uri /health" in text
    assert re.search(r"default-server check inter 1s .*fall 2", text)
    # Pooled idle connections fill the node's connection budget (the failover drill's finding).
    assert "http-reuse never" in text
    # The client's address replaces whatever the client sent (X-Forwarded-For is trusted by
    # the nodes from this proxy only): `option forwardfor` would append to a forged one.
    assert "set-header X-Forwarded-For %[src]" in text
    assert "option forwardfor" not in text
    assert "del-header X-Forwarded-Host" in text
    # Never a cache, never an answer of its own for a document.
    assert "cache" not in text
    assert "errorfile" not in text
