"""The chart of a bench run (matplotlib, Agg: no display needed): fetch requests/s per server
at each connection count, ingest documents/s Vigie vs Orthanc, and audit verify against its
target, with the date and the machine in the title.

    .venv/bin/python -m bench.chart [bench/results/latest.json]   # writes latest.png beside it
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter

from bench.figures import ingest_cpu, ingest_rates

SERVERS = [
    ("nginx", "nginx static\n+ auth_basic", "#7f7f7f"),
    ("orthanc", "Orthanc", "#1f77b4"),
    ("vigie-sqlite", "Vigie\n(SQLite)", "#d62728"),
    ("vigie-postgresql", "Vigie\n(PostgreSQL)", "#ff7f0e"),
]


def machine_line(document: dict[str, Any]) -> str:
    m = document.get("machine", {})
    ram = f", {m['ram_gib']:g} GiB RAM" if m.get("ram_gib") else ""
    return f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores{ram}, Linux {m.get('kernel', '?')}"


def _label(ax: Axes, bars: Any, fmt: str = "{:,.0f}", notes: list[str] | None = None) -> None:
    for index, bar in enumerate(bars):
        height = bar.get_height()
        if height > 0:
            note = notes[index] if notes and notes[index] else ""
            ax.annotate(
                fmt.format(height) + (f"\n{note}" if note else ""),
                (bar.get_x() + bar.get_width() / 2, height),
                xytext=(0, 2),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=7,
            )


def _empty(ax: Axes, stage: str) -> None:
    ax.text(0.5, 0.5, f"no {stage} figures in this run", ha="center", transform=ax.transAxes)
    ax.set_axis_off()


def _thousands(ax: Axes) -> None:
    if ax.get_yscale() == "linear":
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))


def _fetch(ax: Axes, fetch: dict[str, Any] | None) -> None:
    ax.set_title(
        "Fetch a 200 KB document (wrk, median of rounds): req/s and server CPU per request",
        fontsize=10,
    )
    if not fetch:
        _empty(ax, "fetch")
        return
    servers = fetch.get("servers", {})
    counts = [str(c) for c in fetch.get("connections", [])]
    present = [s for s in SERVERS if s[0] in servers]
    width = 0.8 / max(len(present), 1)
    values: list[float] = []
    for i, (key, label, color) in enumerate(present):
        heights = [servers[key].get(c, {}).get("requests_per_s", 0.0) for c in counts]
        cpu = [servers[key].get(c, {}).get("cpu_ms_per_request") for c in counts]
        values += [h for h in heights if h > 0]
        xs = [n + (i - (len(present) - 1) / 2) * width for n in range(len(counts))]
        bars = ax.bar(xs, heights, width, label=label.replace("\n", " "), color=color)
        # req/s moves with whatever else the machine runs; CPU per request does not.
        _label(ax, bars, notes=[f"{c:.2f} ms CPU" if c is not None else "" for c in cpu])
    ax.set_xticks(range(len(counts)), [f"{c} connections" for c in counts])
    ax.set_ylabel("requests/s")
    top = max(values, default=1.0)
    if values and top / max(min(values), 1e-9) > 20:
        ax.set_yscale("log")
        ax.set_ylabel("requests/s (log scale)")
        ax.set_ylim(top=top * 12)  # room for the legend above the bars
    else:
        ax.set_ylim(top=top * 1.35)
    ax.legend(fontsize=8, loc="upper center", ncols=len(present))
    ax.grid(axis="y", alpha=0.3)
    _thousands(ax)


def _ingest(ax: Axes, rates: dict[str, float], cpu: dict[str, float]) -> None:
    ax.set_title("Ingest 200 KB, 8 clients", fontsize=10)
    if not rates:
        _empty(ax, "ingest")
        return
    names = [n for n in ("orthanc", "vigie") if n in rates]
    colors = {"orthanc": "#1f77b4", "vigie": "#d62728"}
    bars = ax.bar(
        [{"orthanc": "Orthanc\nPOST /instances", "vigie": "Vigie\nREST"}[n] for n in names],
        [rates[n] for n in names],
        color=[colors[n] for n in names],
    )
    _label(ax, bars, notes=[f"{cpu[n]:.1f} ms CPU" if n in cpu else "" for n in names])
    ax.set_ylim(top=max(rates[n] for n in names) * 1.2)  # room for the two-line labels
    ax.set_ylabel("documents/s")
    ax.grid(axis="y", alpha=0.3)
    _thousands(ax)


def _audit(ax: Axes, audit: dict[str, Any] | None) -> None:
    ax.set_title("Audit verify", fontsize=10)
    if not audit:
        _empty(ax, "audit")
        return
    rate = float(audit["events_per_second_best"])
    bars = ax.bar(
        [f"{audit['events']:,} events\n({audit['engine']})"], [rate], color="#d62728", width=0.5
    )
    _label(ax, bars)
    ax.axhline(200_000, color="black", linestyle="--", linewidth=1)
    ax.text(0.4, 200_000, "target 200,000/s ", va="bottom", ha="right", fontsize=7)
    ax.set_ylim(0, max(rate, 200_000) * 1.2)
    ax.set_ylabel("events/s")
    ax.grid(axis="y", alpha=0.3)
    _thousands(ax)


def render(document: dict[str, Any], out: Path) -> Path:
    stages = document.get("stages", {})

    def result(name: str) -> dict[str, Any] | None:
        entry = stages.get(name) or {}
        value = entry.get("result")
        return value if isinstance(value, dict) else None

    ingest = result("ingest")
    fig, axes = plt.subplots(
        1, 3, figsize=(13, 5), gridspec_kw={"width_ratios": [3, 1.2, 1]}, layout="constrained"
    )
    _fetch(axes[0], result("fetch"))
    _ingest(axes[1], ingest_rates(ingest) if ingest else {}, ingest_cpu(ingest) if ingest else {})
    _audit(axes[2], result("audit"))
    quick = " — QUICK SMOKE RUN, not reference figures" if document.get("quick") else ""
    fig.suptitle(
        f"Vigie benchmarks, {document.get('date', '?')[:10]}{quick}\n{machine_line(document)}",
        fontsize=11,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main() -> None:
    source = (
        Path(sys.argv[1])
        if len(sys.argv) > 1
        else Path(__file__).parent / "results" / "latest.json"
    )
    document = json.loads(source.read_text(encoding="utf-8"))
    print(render(document, source.with_suffix(".png")))


if __name__ == "__main__":
    main()
