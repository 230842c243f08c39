"""The one way a command's result reaches stdout: its `to_json()` under --json, else its
rendering (cli/render.py). No command tests --json itself."""

from __future__ import annotations

import json
import sys
from typing import Any, Callable

from recap_label.config import Settings
from recap_label.store.faults import crash_point


def show(settings: Settings, result: Any, render: Callable[..., None], *view: Any) -> None:
    """Print `result`: `result.to_json(*view)` as JSON when settings.json, else `render(result, *view)`.
    `view` is what both forms take (e.g. verify's --episodes); None prints nothing (a torchrun
    rank other than 0: rank 0 reports)."""
    if result is None:
        return
    reported = getattr(result, "on_reported", None)  # a state-changing command's report (store.completion)
    if reported is not None:
        crash_point("report")
    if settings.json:
        print_json(result.to_json(*view))
    else:
        render(result, *view)
    if reported is not None:  # it counts as reported once this is written
        sys.stdout.flush()
        crash_point("reported")
        reported()


def byte_progress(settings: Settings):
    """`copy`'s progress bar on stderr; none under --json, where only the JSON object is printed."""
    from recap_label.cli.render import ByteProgress

    return ByteProgress(silent=settings.json)


def print_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")
