"""The bench reports server CPU per operation beside req/s (issue 19): parsed, computed and
shown in the table the docs are generated from."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bench.cpuchild import measure_in_child
from bench.fetch import parse_wrk, with_cpu
from bench.figures import fetch_figures, ingest_figures
from bench.processes import tree_cpu_seconds

# Parses text and reads /proc: the same on both passes.
pytestmark = pytest.mark.sqlite_only

WRK_OUTPUT = """Running 5s test @ http://127.0.0.1:8000/documents/1/content
  2 threads and 32 connections
  Latency Distribution
     50%  168.15ms
     75%  200.00ms
     90%  250.00ms
     99%  315.83ms
  904 requests in 5.01s, 177.21MB read
Requests/sec:    180.44
Transfer/sec:     35.37MB
"""


def test_it_counts_requests_and_divides_cpu_by_them() -> None:
    run = with_cpu(parse_wrk("vigie", WRK_OUTPUT, 32), cpu_seconds=4.52)
    assert run.requests == 904
    assert run.cpu_ms_per_request == pytest.approx(5.0, abs=0.001)


def test_the_cpu_child_runs_the_operation_count_times_and_profiles_it_in_each_order() -> None:
    # readcpu and ingestcpu hand the child their operation's source; `app` is Vigie's WSGI
    # application there. The profile's call count shows the operation really ran n times.
    operation = "def operation():\n    assert callable(app)\n    sum(range(args['size']))\n"
    result = measure_in_child(
        operation,
        {"size": 1000},
        dict(os.environ),
        count=7,
        count_key="sums",
        warmup=2,
        profile=5,
        what="sums",
        timeout=120,
        sort_orders=("cumulative", "tottime"),
    )
    assert result["sums"] == 7
    assert result["cpu_ms"] >= result["request_thread_cpu_ms"] >= 0
    assert result["other_threads_cpu_ms"] == pytest.approx(
        result["cpu_ms"] - result["request_thread_cpu_ms"]
    )
    profile = result["profile"]
    assert "Ordered by: cumulative time" in profile
    assert "Ordered by: internal time" in profile
    assert [line.split()[0] for line in profile.splitlines() if "(operation)" in line] == [
        "7",
        "7",
    ]


def test_the_cpu_child_stops_the_run_with_the_childs_error() -> None:
    operation = "def operation():\n    raise SystemExit('the read answered 403 Forbidden')\n"
    with pytest.raises(SystemExit, match=r"(?s)the reads failed:.*403 Forbidden"):
        measure_in_child(
            operation,
            {},
            dict(os.environ),
            count=3,
            count_key="reads",
            warmup=1,
            profile=0,
            what="reads",
            timeout=120,
        )


def test_it_counts_the_cpu_of_a_servers_children() -> None:
    # A parent that sleeps while its child burns CPU: the tree's seconds are the child's.
    burn = "import time\nx=0\nwhile time.process_time() < 0.3: x += 1\nprint('done', flush=True)\nimport sys; sys.stdin.read()"
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import subprocess,sys; subprocess.run([sys.executable, '-c', {burn!r}])",
        ],
        stdout=subprocess.PIPE,
        stdin=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        assert parent.stdout.readline().strip() == "done"
        assert tree_cpu_seconds(parent.pid) >= 0.3
        assert tree_cpu_seconds(os.getpid() + 10_000_000) == 0.0  # no such process
    finally:
        assert parent.stdin is not None
        parent.stdin.close()
        parent.wait(timeout=10)


def test_it_shows_cpu_per_request_in_the_table() -> None:
    row = {"requests_per_s": 180.0, "p50_ms": 168.0, "p99_ms": 315.0, "errors": []}
    fetch = {
        "connections": [32],
        "servers": {
            "nginx": {"32": {**row, "requests_per_s": 11000.0, "cpu_ms_per_request": 0.038}},
            "orthanc": {"32": {**row, "requests_per_s": 6600.0, "cpu_ms_per_request": 0.093}},
            "vigie-sqlite": {"32": {**row, "cpu_ms_per_request": 6.681}},
        },
    }
    figures = {f["key"]: f for f in fetch_figures(fetch)}
    assert "0.038 ms server CPU/req" in figures["fetch.nginx.32"]["display"]
    vigie = figures["fetch.vigie-sqlite.32"]
    assert "6.681 ms server CPU/req" in vigie["display"]
    assert "CPU ≤ 1.5 ms/req" in vigie["target"]
    assert vigie["met"] is False
    ingest = {
        "rest": {
            "vigie": {"documents_per_s": 40.0, "cpu_ms_per_document": 25.6},
            "orthanc": {"documents_per_s": 300.0, "cpu_ms_per_document": 2.2},
        }
    }
    shown = {f["key"]: f["display"] for f in ingest_figures(ingest)}
    assert "25.60 ms server CPU/doc" in shown["ingest.vigie"]
    assert "2.20 ms server CPU/doc" in shown["ingest.orthanc"]


def test_it_judges_reads_and_ingest_by_issue_19s_targets() -> None:
    # A run that meets every read target at 32 connections (0.1 x nginx, 0.2 x Orthanc, p99
    # 50 ms, 1.5 ms CPU, PostgreSQL 0.8 x SQLite), one that misses, and 256 judged by p99 only.
    def row(rate: float, p99: float, cpu: float) -> dict[str, object]:
        return {
            "requests_per_s": rate,
            "p50_ms": 1.0,
            "p99_ms": p99,
            "cpu_ms_per_request": cpu,
            "errors": [],
        }

    fetch = {
        "connections": [32, 256],
        "servers": {
            "nginx": {"32": row(10000.0, 5.0, 0.04), "256": row(10000.0, 5.0, 0.04)},
            "orthanc": {"32": row(5000.0, 5.0, 0.1), "256": row(5000.0, 5.0, 0.1)},
            "vigie-sqlite": {"32": row(1100.0, 45.0, 1.4), "256": row(1000.0, 900.0, 1.4)},
            "vigie-postgresql": {"32": row(800.0, 45.0, 1.4), "256": row(800.0, 1100.0, 1.4)},
        },
    }
    figures = {f["key"]: f for f in fetch_figures(fetch)}
    sqlite = figures["fetch.vigie-sqlite.32"]
    assert sqlite["target"] == "≥ 0.1 × nginx, ≥ 0.2 × orthanc, p99 ≤ 50 ms, CPU ≤ 1.5 ms/req"
    assert sqlite["met"] is True
    postgres = figures["fetch.vigie-postgresql.32"]
    assert "≥ 0.8 × SQLite" in postgres["target"]
    assert "0.73 x SQLite" in postgres["display"]
    assert postgres["met"] is False  # 800 < 0.8 x 1,100
    assert figures["fetch.vigie-sqlite.256"]["target"] == "p99 ≤ 1 s"
    assert figures["fetch.vigie-sqlite.256"]["met"] is True
    assert figures["fetch.vigie-postgresql.256"]["met"] is False
    ingest = {
        "rest": {
            "vigie": {"documents_per_s": 160.0, "cpu_ms_per_document": 4.9},
            "orthanc": {"documents_per_s": 300.0, "cpu_ms_per_document": 2.2},
        }
    }
    vigie = {f["key"]: f for f in ingest_figures(ingest)}["ingest.vigie"]
    assert vigie["target"] == "≥ 0.5 × Orthanc, CPU ≤ 5 ms/doc"
    assert vigie["met"] is True
    ingest["rest"]["vigie"]["cpu_ms_per_document"] = 7.1
    assert {f["key"]: f for f in ingest_figures(ingest)}["ingest.vigie"]["met"] is False
