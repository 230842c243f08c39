"""A command run as a child process: its wall time, exit code, output and its own peak RSS."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Linux carries a process's peak RSS across fork and exec, so a child started straight from this
# (large) benchmark process would report our peak as its own. A small launcher process, freshly
# exec'd, starts the real command and reports that command's own peak RSS.
_LAUNCHER = """
import os, subprocess, sys
proc = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(proc.pid, 0)
open(sys.argv[1], "w").write(str(usage.ru_maxrss * 1024))
sys.exit(os.waitstatus_to_exitcode(status) % 256)
"""


def run_child(args: list[str], cwd: Path | None = None) -> dict:
    """Run a command; its wall time, exit code, stdout and its own peak RSS (largest process)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, tempfile.NamedTemporaryFile("r") as rss:
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-c", _LAUNCHER, rss.name, *args],
            stdout=out,
            stderr=err,
            cwd=cwd,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        maxrss = int(rss.read() or 0)
        return {
            "wall_s": wall,
            "rc": proc.returncode,
            "maxrss_bytes": maxrss,
            "stdout": out.read().decode(errors="replace"),
            "stderr": err.read().decode(errors="replace"),
        }
