"""The targets the bench judges Vigie by (issue 19), in one place for the stages that check
them (fetch, intake) and the figures that show them (docs/bench.md, the README, the chart).

Ratios are within one run: on a shared machine req/s moves with the load, and nginx, Orthanc
and Vigie are measured in the same interleaved rounds. CPU per operation is each server's own
process-tree CPU time, the steadiest figure of all.
"""

from __future__ import annotations

# An authorised, audited, decrypted 200 KB read.
READ_CPU_MS = 1.5  # server CPU per read, at most
READ_OVER_NGINX = 0.1  # req/s at 32 connections, at least this share of nginx's
READ_OVER_ORTHANC = 0.2  # ... and of Orthanc's
READ_P99_MS_AT_32 = 50.0
READ_P99_MS_AT_256 = 1000.0
POSTGRES_OVER_SQLITE = 0.8  # Vigie on PostgreSQL, at least this share of SQLite's req/s

# REST ingest of a 200 KB PDF.
INGEST_CPU_MS = 5.0  # server CPU per document, at most
INGEST_OVER_ORTHANC = 0.5  # docs/s, at least this share of Orthanc's

# The connection count the ratio and CPU targets are judged at.
JUDGED_AT = "32"
