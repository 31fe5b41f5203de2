"""`vigie check`: this node's view of the group: which node holds each cluster-wide job, and
whether every host's exposure guard is alive (each host has its own firewall).

The jobs (audit watcher, backups, key changes, decoys) run on every node and are done by the
one holding their singleton (vigie/lib/singleton.py): PostgreSQL's pg_locks joined to
pg_stat_activity's application_name (`vigie@<host>:<pid>`), or the lock files on one machine.
"""

from __future__ import annotations

from vigie.lib import singleton
from vigie.ops.check_base import FAILURE, OK, Context, Finding, needs_database


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
