"""The figures of a bench run: each stage's result turned into labelled values and targets.

Shared by the run (which stores them in latest.json), the report (the table of docs/bench.md)
and the chart, so that all three say the same thing about one run.
"""

from __future__ import annotations

from typing import Any

from bench import targets as goal


def _figure(
    key: str,
    label: str,
    value: float | None,
    unit: str,
    display: str,
    target: str | None = None,
    met: bool | None = None,
) -> dict[str, Any]:
    return {
        "key": key,
        "label": label,
        "value": value,
        "unit": unit,
        "display": display,
        "target": target,
        "met": met,
    }


SERVER_LABELS = {
    "nginx": "nginx static + auth_basic",
    "orthanc": "Orthanc /instances/{id}/file",
    "vigie-sqlite": "Vigie (SQLite)",
    "vigie-postgresql": "Vigie (PostgreSQL)",
    "vigie-noaudit": "Vigie, no-audit build",
}


READ_CPU_MS_TARGET = goal.READ_CPU_MS


def fetch_figures(fetch: dict[str, Any]) -> list[dict[str, Any]]:
    figures = []
    servers: dict[str, dict[str, dict[str, Any]]] = fetch.get("servers", {})
    for count in map(str, fetch.get("connections", [])):
        base = {
            name: servers.get(name, {}).get(count, {}).get("requests_per_s")
            for name in ("nginx", "orthanc")
        }
        for name, by_count in servers.items():
            r = by_count.get(count)
            if r is None:
                continue
            label = f"fetch 200 KB, {count} conns: {SERVER_LABELS.get(name, name)}"
            display = f"{r['requests_per_s']:,.0f} req/s, p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms"
            cpu = r.get("cpu_ms_per_request")
            if cpu is not None:
                display += f", {cpu:.3f} ms server CPU/req"
            if r.get("errors"):
                display += " (errors: " + "; ".join(r["errors"])[:120] + ")"
            if not name.startswith("vigie-") or name == "vigie-noaudit":
                figures.append(
                    _figure(
                        f"fetch.{name}.{count}",
                        label,
                        r["requests_per_s"],
                        "req/s",
                        display,
                        "baseline" if name in base else None,
                    )
                )
                continue
            rate = r["requests_per_s"]
            ratios = {b: rate / v if v else None for b, v in base.items()}
            parts = [
                f"{ratios[b]:.3f} x {b}" for b in ("nginx", "orthanc") if ratios[b] is not None
            ]
            checks, targets = _read_targets(name, count, r, ratios, servers)
            if name == "vigie-postgresql":
                sqlite = servers.get("vigie-sqlite", {}).get(count, {}).get("requests_per_s")
                if sqlite:
                    parts.append(f"{rate / sqlite:.2f} x SQLite")
            figures.append(
                _figure(
                    f"fetch.{name}.{count}",
                    label,
                    rate,
                    "req/s",
                    display + (" = " + ", ".join(parts) if parts else ""),
                    ", ".join(targets) or None,
                    all(checks) if checks else None,
                )
            )
    return figures


def _read_targets(
    name: str,
    count: str,
    r: dict[str, Any],
    ratios: dict[str, float | None],
    servers: dict[str, dict[str, dict[str, Any]]],
) -> tuple[list[bool], list[str]]:
    """Issue 19's read targets for one Vigie row: (each check's outcome, each one's text)."""
    checks: list[bool] = []
    targets: list[str] = []
    cpu = r.get("cpu_ms_per_request")
    if count == goal.JUDGED_AT:
        for b, floor in (("nginx", goal.READ_OVER_NGINX), ("orthanc", goal.READ_OVER_ORTHANC)):
            ratio = ratios.get(b)
            if ratio is not None:
                checks.append(ratio >= floor)
                targets.append(f"≥ {floor:g} × {b}")
        if name == "vigie-postgresql":
            sqlite = servers.get("vigie-sqlite", {}).get(count, {}).get("requests_per_s")
            if sqlite:
                checks.append(r["requests_per_s"] >= goal.POSTGRES_OVER_SQLITE * sqlite)
                targets.append(f"≥ {goal.POSTGRES_OVER_SQLITE:g} × SQLite")
        checks.append(r["p99_ms"] <= goal.READ_P99_MS_AT_32)
        targets.append(f"p99 ≤ {goal.READ_P99_MS_AT_32:g} ms")
        if cpu is not None:
            checks.append(cpu <= goal.READ_CPU_MS)
            targets.append(f"CPU ≤ {goal.READ_CPU_MS:g} ms/req")
    else:
        checks.append(r["p99_ms"] <= goal.READ_P99_MS_AT_256)
        targets.append(f"p99 ≤ {goal.READ_P99_MS_AT_256 / 1000:g} s")
    return checks, targets


def _ingest_rate(entry: Any) -> float | None:
    """Documents per second in one server's ingest result, whatever its exact key."""
    if not isinstance(entry, dict):  # counts and settings beside the results
        return None
    for key in ("documents_per_s", "docs_per_s", "instances_per_s", "requests_per_s", "rate"):
        if isinstance(entry.get(key), (int, float)):
            return float(entry[key])
    return None


def ingest_rates(ingest: dict[str, Any]) -> dict[str, float]:
    """{"vigie": docs/s, "orthanc": docs/s} from run_ingest's report."""
    rest = ingest.get("rest") or ingest
    pool = rest.get("servers", rest)
    rates: dict[str, float] = {}
    for name, entry in pool.items():
        rate = _ingest_rate(entry)
        if rate is None or not isinstance(name, str):
            continue
        low = name.lower()
        if "orthanc" in low:
            rates.setdefault("orthanc", rate)
        elif "vigie" in low or low in {"rest", "vigie_rest"}:
            rates.setdefault("vigie", rate)
    return rates


def ingest_cpu(ingest: dict[str, Any]) -> dict[str, float]:
    """{"vigie": CPU ms/doc, "orthanc": CPU ms/doc}, where the run measured them."""
    rest = ingest.get("rest") or ingest
    return {
        name: float(rest[name]["cpu_ms_per_document"])
        for name in ("vigie", "orthanc")
        if isinstance(rest.get(name), dict)
        and isinstance(rest[name].get("cpu_ms_per_document"), (int, float))
    }


def _cpu_suffix(cpu: dict[str, float], name: str) -> str:
    return f", {cpu[name]:.2f} ms server CPU/doc" if name in cpu else ""


def ingest_figures(ingest: dict[str, Any]) -> list[dict[str, Any]]:
    rates = ingest_rates(ingest)
    cpu = ingest_cpu(ingest)
    figures = []
    if "orthanc" in rates:
        figures.append(
            _figure(
                "ingest.orthanc",
                "ingest 200 KB, 8 clients: Orthanc POST /instances",
                rates["orthanc"],
                "docs/s",
                f"{rates['orthanc']:,.0f} docs/s" + _cpu_suffix(cpu, "orthanc"),
                "baseline",
            )
        )
    if "vigie" in rates:
        ratio = rates["vigie"] / rates["orthanc"] if rates.get("orthanc") else None
        figures.append(
            _figure(
                "ingest.vigie",
                "ingest 200 KB, 8 clients: Vigie REST (SQLite)",
                rates["vigie"],
                "docs/s",
                f"{rates['vigie']:,.0f} docs/s"
                + _cpu_suffix(cpu, "vigie")
                + (f" = {ratio:.2f} x Orthanc" if ratio is not None else ""),
                f"≥ {goal.INGEST_OVER_ORTHANC:g} × Orthanc"
                + (f", CPU ≤ {goal.INGEST_CPU_MS:g} ms/doc" if "vigie" in cpu else ""),
                _ingest_met(ratio, cpu.get("vigie")),
            )
        )
    # SQLite's MLLP figures under "mllp" (where earlier results have them), PostgreSQL's
    # under "mllp_postgresql" (bench/mllp.py).
    for key, database in (("mllp", "SQLite"), ("mllp_postgresql", "PostgreSQL")):
        mllp = ingest.get(key)
        if not isinstance(mllp, dict) or not isinstance(mllp.get("messages_per_s"), (int, float)):
            continue
        rate = float(mllp["messages_per_s"])
        cpu_ms = mllp.get("cpu_ms_per_message")
        figures.append(
            _figure(
                "ingest." + key,
                f"HL7 v2 ORU^R01 over MLLP, 8 connections ({database})",
                rate,
                "msgs/s",
                f"{rate:,.0f} messages/s"
                + (f", {cpu_ms:.2f} ms server CPU/message" if cpu_ms is not None else "")
                + _beside_previous(mllp),
                f"≥ {mllp.get('target', 1000):,.0f} msgs/s",
                mllp.get("target_met"),
            )
        )
    return figures


def _beside_previous(result: dict[str, Any]) -> str:
    """ " (R x the previous run)" where the stage compared itself (bench/previous.py)."""
    ratio = result.get("ratio_to_previous")
    return f" ({ratio:.2f} x the previous run)" if isinstance(ratio, (int, float)) else ""


def _ingest_met(ratio: float | None, cpu: float | None) -> bool | None:
    checks = []
    if ratio is not None:
        checks.append(ratio >= goal.INGEST_OVER_ORTHANC)
    if cpu is not None:
        checks.append(cpu <= goal.INGEST_CPU_MS)
    return all(checks) if checks else None


def figures(stages: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    vault = stages.get("vault", {}).get("result")
    if vault:
        seal, opened = vault["seal_200k_docs_per_s"], vault["open_50mb_gb_per_s"]
        out.append(
            _figure(
                "vault.seal",
                "seal 200 KB documents (fsync + rename each)",
                seal,
                "docs/s",
                f"{seal:,.0f} docs/s",
                "≥ 1,000 docs/s",
                seal >= 1000,
            )
        )
        out.append(
            _figure(
                "vault.open",
                "open a 50 MB document (one core)",
                opened,
                "GB/s",
                f"{opened:.2f} GB/s",
                "≥ 1 GB/s",
                opened >= 1,
            )
        )
    fetch = stages.get("fetch", {}).get("result")
    if fetch:
        out += fetch_figures(fetch)
    ingest = stages.get("ingest", {}).get("result")
    if ingest:
        out += ingest_figures(ingest)
    hprim = stages.get("hprim", {}).get("result")
    if hprim:
        rate = float(hprim["files_per_s"])
        shown = f"{rate:,.0f} files/s"
        if "cpu_ms_per_file" in hprim:
            shown += f", {hprim['cpu_ms_per_file']:.2f} CPU ms/file"
        shown += _beside_previous(hprim)
        out.append(
            _figure(
                "hprim.folder",
                f"HPRIM files through the hot folder ({hprim['files']:,} per round, SQLite)",
                rate,
                "files/s",
                shown,
                f"≥ {hprim.get('target', 500):,.0f} files/s",
                hprim.get("target_met"),
            )
        )
    audit = stages.get("audit", {}).get("result")
    if audit:
        rate = float(audit["events_per_second_best"])
        seconds = min(audit["verify_seconds"].values())
        out.append(
            _figure(
                "audit.verify",
                f"audit verify, {audit['events']:,} events ({audit['engine']})",
                rate,
                "events/s",
                f"{rate:,.0f} events/s ({seconds} s, {', '.join(audit['verify_seconds'])})",
                "≥ 200,000 events/s",
                rate >= 200_000,
            )
        )
    keys = stages.get("keys", {}).get("result")
    if keys:
        rate = keys["data_keys_per_second"]
        out.append(
            _figure(
                "keys.rotate",
                f"key rotation, {keys['data_keys']:,} data keys ({keys['engine']})",
                rate,
                "keys/s",
                f"{rate:,.0f} data keys re-wrapped/s ({keys['rotate_seconds']} s)",
            )
        )
    cold = stages.get("coldstart", {}).get("result")
    if cold:
        out.append(
            _figure(
                "coldstart",
                f"cold start of `vigie serve` to first document ({cold['runs']} runs)",
                cold["median_s"],
                "s",
                f"median {cold['median_s']:.2f} s, max {cold['max_s']:.2f} s"
                + (
                    f" (port open at {cold['listening_median_s']:.2f} s)"
                    if "listening_median_s" in cold
                    else ""
                ),
            )
        )
    backup = stages.get("backup", {}).get("result")
    if backup:
        out += backup_figures(backup)
    return out


BACKUP_TARGET_S = 60.0
BACKUP_TARGET_DOCUMENTS = 10_000


def backup_figures(backup: dict[str, Any]) -> list[dict[str, Any]]:
    """Wall clock of each `vigie` command, process start included; the seconds the command
    itself reports in brackets. The 60 s targets are for 10,000 documents: a smaller run
    (--quick) shows them without a verdict."""
    count = int(backup["documents"])
    full = count >= BACKUP_TARGET_DOCUMENTS
    target = f"≤ {BACKUP_TARGET_S:.0f} s" + (
        "" if full else f" at {BACKUP_TARGET_DOCUMENTS:,} documents"
    )
    gigabytes = backup.get("blob_bytes", 0) / 1e9

    def timed(key: str) -> tuple[float, str]:
        step = backup[key]
        return step["wall_s"], f"{step['wall_s']:.1f} s ({step['reported_s']:.1f} s in the command)"

    figures = []
    for key, label in (
        ("create", f"backup create, {count:,} documents of 200 KB ({gigabytes:.1f} GB)"),
        ("restore", f"backup restore (with verification), {count:,} documents"),
    ):
        seconds, display = timed(key)
        figures.append(
            _figure(
                f"backup.{key}",
                label,
                seconds,
                "s",
                display,
                target,
                seconds <= BACKUP_TARGET_S if full else None,
            )
        )
    for key, label in (
        ("incremental", f"backup create again, nothing new ({count:,} blobs already there)"),
        ("verify", f"backup verify, {count:,} documents (decrypt + SHA-256)"),
    ):
        seconds, display = timed(key)
        figures.append(_figure(f"backup.{key}", label, seconds, "s", display))
    return figures
