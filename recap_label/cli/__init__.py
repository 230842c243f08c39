"""The `recap-label` command line: parse, build Settings or a request, call the library, show the result.

`app.py` holds the Typer app and the entry point, `boundary.py` the one place errors become
`Error:` lines (and JSON), `options.py` the shared options, `output.py` the one JSON-or-render
switch, `render.py` every table and line printed; one module per command or group of commands.
"""

from recap_label.cli.app import app, main

# each module registers its commands on `app`; this order is the order of `--help`
from recap_label.cli import config, copy, verify, label, rollback, iterations, unretire, diff, view, cache  # noqa: E402,F401  isort: skip

__all__ = ["app", "main"]
