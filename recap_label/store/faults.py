"""Named crash points for the fault-injection tests.

`RECAP_LABEL_CRASH_AT=<point>:<n>` kills the process with SIGKILL the n-th time (1-based)
it reaches `crash_point(<point>)`; `*:<n>` counts every point, so `*:1`, `*:2`, … walk
through every file operation of a command in order.
`RECAP_LABEL_SLOW_AT=<point>:<seconds>` sleeps that long each time `<point>` is reached
(concurrency tests use it to hold the lock open, e.g. `locked:2`); with `RECAP_LABEL_SLOW_MARK=<file>`
each such pause first appends the point's name to that file, so a test knows when to signal.
Unset (always, outside tests) each costs two dict lookups.

Points: `locked` (the dataset lock was just taken), `lock-break` (about to remove a stale lock),
`stage` (a staged file is written), `backup` (the commit's undo links are made), `journal`
(the commit journal is written), `rename` (one staged file replaced its target), `done`
(the journal is removed), `atomic-write` / `atomic-replace` (fsutil.write_file_atomic before
and after its rename), `copy-mkdir`, `copy-file`, `copy-verified`, `copy-lineage`,
`copy-registered`, `copy-renamed`, `register` (a cache link was swapped), `episode-values`
(one episode's values were written to the resume parts during inference), `report` / `reported`
(a state-changing command's report is about to be printed / was printed, its completion record
not yet dropped: store.completion), `columns-read` (one data file's label columns were read: verify's
reads slowed while another command commits).
"""

from __future__ import annotations

import os
import signal
import time

_counts: dict[str, int] = {}


def crash_point(point: str) -> None:
    slow = os.environ.get("RECAP_LABEL_SLOW_AT")
    if slow:
        name, _, seconds = slow.rpartition(":")
        if name == point or name == "*":
            mark = os.environ.get("RECAP_LABEL_SLOW_MARK")
            if mark:  # tell the test the process is now held here (it may signal it)
                with open(mark, "a") as f:
                    f.write(point + "\n")
            time.sleep(float(seconds or 1))
    spec = os.environ.get("RECAP_LABEL_CRASH_AT")
    if not spec:
        return
    name, _, nth = spec.partition(":")
    if name != point and name != "*":
        return
    _counts[name] = _counts.get(name, 0) + 1
    if _counts[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
