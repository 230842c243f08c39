"""Named crash points for the fault-injection tests.

`RECAP_LABEL_CRASH_AT=<point>:<n>` kills the process with SIGKILL the n-th time (1-based)
it reaches `crash_point(<point>)`. Unset (always, outside tests) it costs one dict lookup.
"""

from __future__ import annotations

import os
import signal

_counts: dict[str, int] = {}


def crash_point(point: str) -> None:
    spec = os.environ.get("RECAP_LABEL_CRASH_AT")
    if not spec:
        return
    name, _, nth = spec.partition(":")
    if name != point and name != "*":
        return
    _counts[name] = _counts.get(name, 0) + 1
    if _counts[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
