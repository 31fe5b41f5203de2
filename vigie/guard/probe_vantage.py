"""Running the fetcher (`vigie.guard.fetch`, standard library only) on the vantage point.

The vantage point is the policy's command prefix (`ip netns exec outside`, `ssh probe@vps`...);
the fetcher's source goes to its python3 on the command line and the job on its stdin, as
JSON. Whatever goes wrong there comes back as FetchFailed, never as another exception.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from vigie.guard import fetch
from vigie.guard.policy import Policy

REQUEST_TIMEOUT = 5.0
ROUND_DEADLINE = 20.0
# Only what the fetcher may need to start (and ssh to find its keys): never the guard's
# secrets (VIGIE_SECRET_KEY...), which have no business on a vantage point.
_ENV_KEPT = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "SSH_AUTH_SOCK", "USER", "LOGNAME")


class FetchFailed(RuntimeError):
    """The fetcher could not be run or gave no usable answer; the message says why."""


def fetcher_command(policy: Policy) -> list[str]:
    source = Path(fetch.__file__).read_text(encoding="utf-8")
    if not policy.probe_vantage:
        return [sys.executable, "-I", "-c", source]
    command = ["python3", "-I", "-c", source]
    if Path(policy.probe_vantage[0]).name == "ssh":
        # ssh hands the remote side one shell command line, not an argument vector.
        return [*policy.probe_vantage, shlex.join(command)]
    return [*policy.probe_vantage, *command]


def run_fetcher(policy: Policy, job: dict[str, Any]) -> dict[str, Any]:
    job = {"timeout": REQUEST_TIMEOUT, "deadline": ROUND_DEADLINE, **job}
    job["ca_file"] = policy.probe_ca_file or None
    env = {name: os.environ[name] for name in _ENV_KEPT if name in os.environ}
    try:
        proc = subprocess.run(  # noqa: S603  (the policy's vantage prefix and our own script)
            fetcher_command(policy),
            input=json.dumps(job),
            capture_output=True,
            text=True,
            env=env,
            # The fetcher stops starting requests at its deadline; this bounds the rest
            # (a hung ssh, a vantage that never answers).
            timeout=float(job["deadline"]) + 2 * REQUEST_TIMEOUT + 10,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise FetchFailed("the fetcher did not finish in time") from None
    except OSError as exc:
        raise FetchFailed(f"cannot start the fetcher: {exc.strerror or exc}") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        raise FetchFailed(f"the fetcher failed (exit status {proc.returncode}): {last[:300]}")
    try:
        answer = json.loads(proc.stdout)
    except ValueError:
        raise FetchFailed("the fetcher's answer is not JSON") from None
    if not isinstance(answer, dict):
        raise FetchFailed("the fetcher's answer is not a JSON object")
    return answer
