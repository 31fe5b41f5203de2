"""Call one WSGI operation serially in a child process with Vigie's environment; say its CPU.

bench/readcpu.py (an audited read) and bench/ingestcpu.py (a REST upload) ask the same
question of two paths: how much CPU one operation costs, split between the request thread and
the others (the audit appender), and, with `--profile`, where it goes. Each sets up its own
installation, then hands this module the body of its operation; the child process, the
warm-up, the timing, the profile and the marked result line are the same for both.

The child runs in a fresh interpreter so that Django is configured by Vigie's environment
alone (production mode, the installation's keys and database), not by the bench's process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Any

# The line of the child's output that carries its result; anything Vigie logs is ignored.
_MARK = "@@CPUCHILD@@"

# Before the operation's source: Django set up from the environment, the arguments, the app.
_HEAD = """
import cProfile, io, json, os, pstats, sys, time
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vigie.settings")
import django
django.setup()
from django.core.wsgi import get_wsgi_application
args = json.loads(sys.argv[1])
app = get_wsgi_application()
"""

# After it (which defines `operation()`): warm up (first-call imports, caches, connections),
# time `count` calls, then profile as many more if asked — a separate pass, because cProfile
# roughly doubles the times it watches.
_TAIL = """
n = args["count"]
for _ in range(min(args["warmup"], n)):
    operation()
wall, cpu, own = time.perf_counter(), time.process_time(), time.thread_time()
for _ in range(n):
    operation()
result = {
    args["count_key"]: n,
    "wall_ms": 1000 * (time.perf_counter() - wall) / n,
    "cpu_ms": 1000 * (time.process_time() - cpu) / n,
    "request_thread_cpu_ms": 1000 * (time.thread_time() - own) / n,
}
result["other_threads_cpu_ms"] = result["cpu_ms"] - result["request_thread_cpu_ms"]
if args["profile"]:
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(n):
        operation()
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    for order in args["sort_orders"]:
        stats.sort_stats(order).print_stats(args["profile"])
    result["profile"] = out.getvalue()
print(args["mark"] + json.dumps(result))
"""


def measure_in_child(
    operation: str,
    args: Mapping[str, Any],
    env: Mapping[str, str],
    *,
    count: int,
    count_key: str,
    warmup: int,
    profile: int,
    what: str,
    timeout: float,
    sort_orders: Sequence[str] = ("cumulative",),
) -> dict[str, Any]:
    """Run `operation` (Python source defining `operation()`, which may use `app` and `args`)
    `count` times in a child with environment `env`, after `warmup` calls.

    Returns {count_key: count, "wall_ms", "cpu_ms", "request_thread_cpu_ms",
    "other_threads_cpu_ms"} per operation, plus "profile" (cProfile's `profile` top
    functions, once per sort order) when `profile` is not 0. Exits naming `what` ("reads")
    with the child's output if it fails or prints no result.
    """
    child_args = {
        **args,
        "count": count,
        "count_key": count_key,
        "warmup": warmup,
        "profile": profile,
        "sort_orders": list(sort_orders),
        "mark": _MARK,
    }
    done = subprocess.run(
        [sys.executable, "-c", _HEAD + operation + _TAIL, json.dumps(child_args)],
        env=dict(env),
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
    lines = [x for x in done.stdout.splitlines() if x.startswith(_MARK)]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"the {what} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1][len(_MARK) :])
    return result
