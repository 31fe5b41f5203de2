"""`vigie check`: this node's view of the group: which node holds each cluster-wide job,
whether every host's exposure guard is alive (each host has its own firewall), whether the
database it writes to is the primary with a synchronous standby, and whether the blob store
answers and refuses overwrites.

The jobs (audit watcher, backups, key changes, decoys) run on every node and are done by the
one holding their singleton (vigie/lib/singleton.py): PostgreSQL's pg_locks joined to
pg_stat_activity's application_name (`vigie@<host>:<pid>`), or the lock files on one machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vigie.lib import singleton
from vigie.ops.check_base import FAILURE, OK, WARNING, Context, Finding, needs_database


def check_singletons(ctx: Context) -> Finding:
    skipped = needs_database(ctx, "nodes.singletons")
    if skipped:
        return skipped
    held = {holder.name: holder.node or "?" for holder in singleton.holders()}
    listed = "; ".join(f"{name}: {held.get(name, 'nobody')}" for name in singleton.KNOWN)
    return Finding(
        "nodes.singletons",
        OK,
        f"this node is {singleton.node_name()}; cluster-wide jobs held by: {listed}",
    )


def check_guard_hosts(ctx: Context) -> Finding:
    """`guard.heartbeat` judges the latest beat of any host; here each host on its own."""
    from vigie.guard.heartbeat import elapsed, is_silent
    from vigie.guard.models import GuardHost

    skipped = needs_database(ctx, "guard.hosts")
    if skipped:
        return skipped
    hosts = list(GuardHost.objects.order_by("host"))
    silent = [h.host for h in hosts if is_silent(elapsed(h.last_heartbeat, ctx.now))]
    if silent:
        return Finding(
            "guard.hosts",
            FAILURE,
            f"the exposure guard of {', '.join(silent)} is silent: that host's firewall is "
            "not watched",
            "start `vigie guard run` there (e.g. `systemctl start vigie-guard`); a host taken "
            "out of the group: `vigie guard forget HOST`",
        )
    return Finding("guard.hosts", OK, f"{len(hosts)} host(s), every guard alive")


# --- the database's role and its standby ---------------------------------------------------


@dataclass(frozen=True)
class Standby:
    """One row of pg_stat_replication, as the primary sees its standby."""

    name: str
    state: str | None  # None: the role may not read other sessions' details
    sync_state: str | None
    replay_lag_seconds: float | None


def replication_finding(
    in_recovery: bool, synchronous_commit: str, standbys: list[Standby]
) -> Finding:
    """What a clinic's IT needs to hear about the database this node writes to."""
    check_id = "database.replication"
    if in_recovery:
        return Finding(
            check_id,
            FAILURE,
            "this node is connected to a standby (read-only, in recovery): every audit append, "
            "so every read and ingest, is refused",
            "point DATABASE_URL at the primary, or list every database server in it with "
            "?target_session_attrs=read-write so that nodes follow a failover (docs/operations.md)",
        )
    if not standbys:
        # One database server is a valid installation for a clinic (like SQLite): said, not
        # warned about. What a group needs is in the message.
        return Finding(
            check_id,
            OK,
            "primary with no standby: if this database server fails, Vigie stops until it is "
            "restored from a backup (a group of clinics adds a synchronous standby: "
            "docs/operations.md, section 9)",
        )
    if any(s.state is None for s in standbys):
        return Finding(
            check_id,
            WARNING,
            f"primary; {len(standbys)} standby(s) connected, but this role may not see their "
            "replication state",
            "GRANT pg_monitor TO the Vigie role, so that `vigie check` can judge the standby",
        )
    listed = ", ".join(_describe(s) for s in standbys)
    synchronous = [s for s in standbys if s.sync_state in {"sync", "quorum"}]
    if not synchronous:
        return Finding(
            check_id,
            WARNING,
            f"primary; every standby is asynchronous ({listed}): a failover can lose the last "
            "documents and audit events Vigie acknowledged",
            "set synchronous_standby_names on the primary (Patroni: synchronous_mode: true)",
        )
    if synchronous_commit in {"off", "local"}:
        return Finding(
            check_id,
            WARNING,
            f"primary with a synchronous standby ({listed}), but synchronous_commit is "
            f"{synchronous_commit}: commits do not wait for it",
            "set synchronous_commit = on (or remote_apply) for the Vigie database",
        )
    return Finding(check_id, OK, f"primary; synchronous standby streaming: {listed}")


def _describe(standby: Standby) -> str:
    lag = (
        ""
        if standby.replay_lag_seconds is None
        else f", replay lag {standby.replay_lag_seconds:.1f} s"
    )
    return f"{standby.name or '?'} ({standby.state}, {standby.sync_state}{lag})"


def check_database_replication(ctx: Context) -> Finding:
    from django.db import connection

    if not ctx.database_reachable:
        return Finding(
            "database.replication", WARNING, "not checked: the database is unreachable (see above)"
        )
    if connection.vendor != "postgresql":
        return Finding(
            "database.replication",
            OK,
            "SQLite: one machine, no replica; the backups are the copy (`vigie backup`)",
        )
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_is_in_recovery(), current_setting('synchronous_commit')")
        in_recovery, synchronous_commit = cursor.fetchone()
        standbys: list[Standby] = []
        if not in_recovery:
            cursor.execute(
                "SELECT application_name, state, sync_state, "
                "EXTRACT(EPOCH FROM replay_lag)::float FROM pg_stat_replication "
                "ORDER BY application_name"
            )
            standbys = [Standby(*row) for row in cursor.fetchall()]
    return replication_finding(bool(in_recovery), str(synchronous_commit), standbys)


# --- the blob store --------------------------------------------------------------------------


def check_blob_store(ctx: Context) -> list[Finding]:
    """Reachable and write-once, proved now (not the cached proof of the process's start)."""
    from django.conf import settings

    if settings.VIGIE_BLOB_STORE != "s3":
        root = Path(settings.VIGIE_BLOB_DIR)
        if root.exists() and not root.is_dir():
            return [
                Finding(
                    "store",
                    FAILURE,
                    f"the blob store {root} is not a folder",
                    "set VIGIE_BLOB_DIR to a folder for Vigie alone",
                )
            ]
        # Absent on a new installation: the first document creates it (private).
        return [
            Finding(
                "store",
                OK,
                f"filesystem blob store at {root} (one machine; the nodes of a group need S3)",
            )
        ]
    from botocore.exceptions import BotoCoreError, ClientError

    from vigie.vault.errors import VaultError
    from vigie.vault.s3store import S3BlobStore, config_from_settings, make_client

    try:
        config = config_from_settings()
        store = S3BlobStore(make_client(config), config.bucket, config.prefix)
        store.probe_write_once()
    except VaultError as exc:
        return [
            Finding(
                "store",
                FAILURE,
                str(exc),
                "check VIGIE_S3_* settings, the credentials files and that the store answers",
            )
        ]
    findings = [
        Finding(
            "store",
            OK,
            f"S3 blob store {store.describe()} reachable and refuses overwrites (probed now)",
        )
    ]
    try:
        versioning = store.client.get_bucket_versioning(Bucket=config.bucket).get("Status")
    except (ClientError, BotoCoreError):
        versioning = None
    try:
        lock = store.client.get_object_lock_configuration(Bucket=config.bucket)
        locked = lock.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"
    except (ClientError, BotoCoreError):  # no lock configured, or not allowed to ask
        locked = False
    if versioning == "Enabled" or locked:
        kept = "object lock" if locked else "versioning"
        findings.append(Finding("store.retention", OK, f"the bucket keeps deleted blobs ({kept})"))
    else:
        findings.append(
            Finding(
                "store.retention",
                WARNING,
                f"the bucket {config.bucket} has neither versioning nor object lock "
                f"(versioning: {versioning or 'off or not readable'}): a blob deleted with "
                "stolen credentials is gone until a restore",
                "enable versioning (or object lock in governance mode) on the bucket",
            )
        )
    return findings
