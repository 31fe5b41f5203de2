"""`vigie check`: the services beside the portal: the exposure guard (alive, its table, its
policy, the listening sockets), MLLP intake, the backups and the audit watcher. The shared
pieces are in `check_base.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from django.conf import settings

from vigie.ops.check_base import FAILURE, OK, WARNING, Context, Finding, needs_database

# A daily backup may run a little late; beyond this it did not run.
BACKUP_MAX_AGE = timedelta(hours=26)
VERIFY_MAX_AGE = timedelta(days=8)
_MAX_LISTED = 5


def _ago(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 2 * 3600:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


# --- the exposure guard --------------------------------------------------------------------

_START_GUARD = (
    "start the guard: `vigie guard run` as root or with CAP_NET_ADMIN "
    "(e.g. `systemctl start vigie-guard`), then read its log"
)


def check_guard_heartbeat(ctx: Context) -> Finding:
    from vigie.guard.heartbeat import silence_seconds
    from vigie.guard.models import GuardState

    skipped = needs_database(ctx, "guard.heartbeat")
    if skipped:
        return skipped
    silence = silence_seconds(ctx.now)
    limit = settings.VIGIE_GUARD_SILENCE_SECONDS
    if silence is None:
        return Finding(
            "guard.heartbeat",
            FAILURE,
            "the exposure guard has never reported: nobody watches the perimeter",
            _START_GUARD,
        )
    if silence > limit:
        return Finding(
            "guard.heartbeat",
            FAILURE,
            f"the exposure guard's last heartbeat was {_ago(silence)} ago (limit {limit} s): "
            "it is stopped or stuck, and nobody watches the perimeter",
            _START_GUARD,
        )
    state = GuardState.objects.filter(pk=GuardState.SINGLETON).first()
    where = f" (pid {state.guard_pid} on {state.guard_host})" if state and state.guard_pid else ""
    return Finding(
        "guard.heartbeat", OK, f"the guard is alive{where}, last beat {_ago(silence)} ago"
    )


def check_lockdown(ctx: Context) -> Finding:
    from vigie.guard.models import GuardState

    skipped = needs_database(ctx, "guard.lockdown")
    if skipped:
        return skipped
    state = GuardState.objects.filter(pk=GuardState.SINGLETON).first()
    if state is None or not state.lockdown:
        return Finding("guard.lockdown", OK, "not in lockdown")
    since = f" since {state.lockdown_since:%Y-%m-%d %H:%M}" if state.lockdown_since else ""
    return Finding(
        "guard.lockdown",
        WARNING,
        f"the portal is in lockdown{since} (no documents served): {state.lockdown_reason}",
        "fix the exposure, then clear the lockdown on the guard page as an administrator",
    )


def check_policy(ctx: Context) -> Finding:
    from vigie.guard.policy import PolicyError, load_policy

    path = Path(settings.VIGIE_POLICY_FILE)
    try:
        ctx.policy = load_policy(path)
    except PolicyError as exc:
        if not path.exists():
            fix = (
                f"copy deploy/vigie-policy.example.toml to {path} (or point VIGIE_POLICY_FILE "
                "at your policy), adapt it, and test it with `vigie guard check-policy`"
            )
        else:
            fix = f"correct {path} and test it with `vigie guard check-policy`"
        return Finding("guard.policy", FAILURE, f"exposure policy: {exc}", fix)
    listeners = len(ctx.policy.listeners)
    return Finding("guard.policy", OK, f"exposure policy {path} is valid ({listeners} listener(s))")


def check_nftables(ctx: Context) -> Finding:
    from vigie.guard import nft

    try:
        present = nft.table_exists()
    except nft.NftUnavailable as exc:
        return Finding(
            "guard.nftables",
            FAILURE,
            f"cannot read the firewall: {exc}",
            "install nftables and run `vigie check` as root (or with CAP_NET_ADMIN)",
        )
    if not present:
        return Finding(
            "guard.nftables",
            FAILURE,
            f"the nftables table `{nft.TABLE}` is missing: the kernel does not guard the "
            "portal's ports",
            f"{_START_GUARD}; it installs the table (see `nft list table {nft.TABLE}`)",
        )
    return Finding("guard.nftables", OK, f"nftables table `{nft.TABLE}` present")


def check_listeners(ctx: Context) -> Finding:
    import psutil

    from vigie.guard import findings, snapshot

    if ctx.policy is None:
        return Finding("guard.listeners", WARNING, "not checked: no valid exposure policy")
    try:
        sockets = snapshot.listening_sockets()
    except (psutil.Error, OSError) as exc:
        return Finding(
            "guard.listeners",
            WARNING,
            f"cannot list the listening sockets ({exc})",
            "run `vigie check` as root to see every process's sockets",
        )
    problems = findings.listener_findings(ctx.policy, sockets)
    if not problems:
        return Finding(
            "guard.listeners", OK, f"{len(sockets)} listening socket(s), all declared in the policy"
        )
    listed = "; ".join(p.summary for p in problems[:_MAX_LISTED])
    more = f" and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
    serious = any(p.severity == findings.CRITICAL for p in problems)
    return Finding(
        "guard.listeners",
        FAILURE if serious else WARNING,
        f"listening sockets outside the policy: {listed}{more}",
        f"stop the service, bind it to 127.0.0.1, or declare it as a [[listener]] in "
        f"{settings.VIGIE_POLICY_FILE}",
    )


def mllp_arguments(argv: Sequence[str]) -> list[str] | None:
    """The options of a `vigie intake mllp` command line, or None if it is not one."""
    for index in range(len(argv) - 1):
        if argv[index] == "intake" and argv[index + 1] == "mllp":
            return list(argv[index + 2 :])
    return None


@dataclass(frozen=True)
class MllpListener:
    pid: int
    arguments: list[str]
    # (address, port) of each socket it listens on.
    addresses: list[tuple[str, int]]


def mllp_listeners() -> list[MllpListener]:
    """Each running `vigie intake mllp` process with its options and listening sockets
    (a process of another user is seen only when `vigie check` runs as root)."""
    import psutil

    found: list[MllpListener] = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        arguments = mllp_arguments(process.info.get("cmdline") or [])
        if arguments is None:
            continue
        try:
            sockets = process.net_connections(kind="inet")
        except (psutil.Error, OSError):
            continue
        addresses = [
            (str(c.laddr.ip), int(c.laddr.port))
            for c in sockets
            if c.status == psutil.CONN_LISTEN and c.laddr
        ]
        if addresses:
            found.append(MllpListener(process.pid, arguments, addresses))
    return found


def check_mllp(ctx: Context) -> Finding:
    """Every running MLLP listener that reaches beyond loopback has mutual TLS.

    The server refuses such a start itself; this finds what got round it (an older Vigie
    still running, a unit edited by hand) by what is actually listening: each process whose
    command line is `vigie intake mllp`, its sockets in LISTEN, and its own options.
    """
    import argparse

    from vigie.intake.hl7 import server

    parser = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    server.configure(parser)
    listeners = mllp_listeners()
    exposed: list[str] = []
    for listener in listeners:
        try:
            options, _unknown = parser.parse_known_args(listener.arguments)
            mutual = bool(options.tls_cert and options.tls_client_ca)
        except (argparse.ArgumentError, SystemExit):
            mutual = False
        beyond = [(ip, port) for ip, port in listener.addresses if not server.is_loopback(ip)]
        if beyond and not mutual:
            where = ", ".join(f"{ip}:{port}" for ip, port in beyond)
            exposed.append(f"pid {listener.pid} on {where}")
    if exposed:
        return Finding(
            "intake.mllp",
            FAILURE,
            "an MLLP listener reaches beyond loopback without mutual TLS, so anyone who "
            f"reaches its port can file documents under any patient: {'; '.join(exposed)}",
            "restart it with --tls-cert, --tls-key and --tls-client-ca (see docs/operations.md, "
            '"HL7 v2 over MLLP"), or bind it to 127.0.0.1',
        )
    if not listeners:
        return Finding("intake.mllp", OK, "no MLLP listener is running")
    return Finding(
        "intake.mllp",
        OK,
        f"{len(listeners)} MLLP listener(s): on loopback only or with mutual TLS",
    )


# --- backups and audit ---------------------------------------------------------------------

_BACKUP_FIX = (
    "run `vigie backup create DEST` every night (cron or a systemd timer) and keep a "
    "`vigie keys export` file in another safe place"
)


def check_backup(ctx: Context) -> Finding:
    from vigie.audit.models import AuditEvent

    skipped = needs_database(ctx, "backup")
    if skipped:
        return skipped
    last = (
        AuditEvent.objects.filter(action="backup.create", outcome="success")
        .order_by("-seq")
        .first()
    )
    if last is None:
        return Finding("backup", FAILURE, "no backup has ever been made", _BACKUP_FIX)
    age = ctx.now - last.at
    snapshot = (last.extra or {}).get("snapshot", "?")
    if age > BACKUP_MAX_AGE:
        return Finding(
            "backup",
            FAILURE,
            f"no backup in the last day: the last one (snapshot {snapshot}) is "
            f"{_ago(age.total_seconds())} old",
            _BACKUP_FIX,
        )
    return Finding(
        "backup", OK, f"last backup {_ago(age.total_seconds())} ago (snapshot {snapshot})"
    )


def check_backup_verified(ctx: Context) -> Finding:
    from vigie.audit.models import AuditEvent

    skipped = needs_database(ctx, "backup.verified")
    if skipped:
        return skipped
    verifies = AuditEvent.objects.filter(action="backup.verify").order_by("-seq")
    latest = verifies.first()
    fix = "run `vigie backup verify DEST` (weekly at least) and read the problems it lists"
    if latest is not None and latest.outcome != "success":
        snapshot = (latest.extra or {}).get("snapshot", "?")
        return Finding(
            "backup.verified",
            FAILURE,
            f"the last backup verification failed (snapshot {snapshot}, "
            f"{_ago((ctx.now - latest.at).total_seconds())} ago)",
            fix,
        )
    if latest is None:
        return Finding("backup.verified", WARNING, "no backup has ever been verified", fix)
    age = ctx.now - latest.at
    if age > VERIFY_MAX_AGE:
        return Finding(
            "backup.verified",
            WARNING,
            f"the last backup verification is {_ago(age.total_seconds())} old",
            fix,
        )
    snapshot = (latest.extra or {}).get("snapshot", "?")
    return Finding(
        "backup.verified",
        OK,
        f"backup verified {_ago(age.total_seconds())} ago (snapshot {snapshot})",
    )


_START_AUDIT_WATCH = (
    "start the audit watcher: `vigie audit watch` (e.g. `systemctl enable --now "
    "vigie-audit-watch`), then read its log"
)


def check_audit_watch(ctx: Context) -> Finding:
    """The watcher signs the tail every minute and runs the anomaly rules: it must be alive."""
    from vigie.audit import watch

    beat = watch.last_beat()
    limit = watch.silence_limit()
    if beat is None:
        return Finding(
            "audit.watch",
            FAILURE,
            "the audit watcher has never reported: the audit tail is not anchored every "
            "minute and the anomaly rules (crawler, many patients, denials) never run",
            _START_AUDIT_WATCH,
        )
    silence = (ctx.now - beat).total_seconds()
    if silence > limit.total_seconds():
        return Finding(
            "audit.watch",
            FAILURE,
            f"the audit watcher's last heartbeat was {_ago(silence)} ago "
            f"(limit {int(limit.total_seconds())} s): it is stopped or stuck, the audit tail "
            "is not anchored and the anomaly rules do not run",
            _START_AUDIT_WATCH,
        )
    return Finding("audit.watch", OK, f"the audit watcher is alive, last beat {_ago(silence)} ago")


def check_audit_checkpoint(ctx: Context) -> Finding:
    """Events wait at most one interval for their signed checkpoint; twice that is late."""
    from vigie.audit import checkpoints
    from vigie.audit.models import AuditEvent, AuditHead

    skipped = needs_database(ctx, "audit.checkpoint")
    if skipped:
        return skipped
    head = AuditHead.objects.filter(pk=1).first()
    # The signed file, not the head row's checkpoint_seq: that column is the database's word,
    # which someone with database access alone can set to the head.
    signed = checkpoints.last_signed_seq()
    if head is None or head.seq <= signed:
        return Finding("audit.checkpoint", OK, "every audit event is under a signed checkpoint")
    oldest = (
        AuditEvent.objects.filter(seq__gt=signed)
        .order_by("seq")
        .values_list("at", flat=True)
        .first()
    )
    limit = timedelta(seconds=2 * settings.VIGIE_AUDIT_CHECKPOINT_SECONDS)
    if oldest is None or ctx.now - oldest <= limit:
        return Finding("audit.checkpoint", OK, "audit checkpoints are up to date")
    last = f"the last one {head.checkpoint_at:%Y-%m-%d %H:%M}" if head.checkpoint_at else "none yet"
    return Finding(
        "audit.checkpoint",
        WARNING,
        f"{head.seq - signed} audit event(s) have waited "
        f"{_ago((ctx.now - oldest).total_seconds())} for a signed checkpoint ({last})",
        "run `vigie audit watch` as a service (it signs a checkpoint every "
        f"{settings.VIGIE_AUDIT_CHECKPOINT_SECONDS} s), or `vigie audit checkpoint` from cron",
    )
