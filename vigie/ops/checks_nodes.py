"""`vigie check`: this node's view of the group: which node holds each cluster-wide job.

The jobs (audit watcher, backups, key changes, decoys) run on every node and are done by the
one holding their singleton (vigie/lib/singleton.py): PostgreSQL's pg_locks joined to
pg_stat_activity's application_name (`vigie@<host>:<pid>`), or the lock files on one machine.
"""

from __future__ import annotations

from vigie.lib import singleton
from vigie.ops.check_base import OK, Context, Finding, needs_database


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
