"""The one error boundary of the command line.

Whatever goes wrong in any command, or before one runs, ends here: a RecapError (its message,
exit code and `kind`), an OSError no closer place explained (`os_error`), Ctrl-C (`interrupted`,
130; its message from store.completion: nothing changed, or what was done before the report was
cut short) become one `Error: …` line on stderr and the exit code; under --json the same error is also
a JSON object on stdout. A usage error (a flag or value Click rejects before a command runs, e.g.
`--lookahead 1e30`) keeps Click's `Usage:` lines and `Error:` line, and is the same JSON object
under --json. Nothing else is caught: a bug shows its traceback.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager

import typer
from typer.core import TyperGroup

from recap_label.cli.output import print_json
from recap_label.config import Settings
from recap_label.errors import FileOperationError, Interrupted, RecapError
from recap_label.store import completion

try:  # the Click that Typer parses with: its own copy since Typer 0.26 ...
    from typer._click.exceptions import UsageError
except ImportError:  # pragma: no cover  ... Click itself before
    from click.exceptions import UsageError

USAGE_ERROR_KIND = "usage_error"  # the `kind` of a usage error, beside the RecapError kinds (errors.py)
_ARGS = "recap_label.args"
_ROOT_VALUE_OPTIONS = ("--config", "--lerobot-home")  # the root options with a value (cli/app.py)


class Boundary(TyperGroup):
    """The app's group: its own parsing (root flags, the command's name) and everything it invokes
    (the root callback, the command's parsing and body) run inside `errors_reported`."""

    def parse_args(self, ctx, args):
        ctx.meta[_ARGS] = list(args)  # every token, the command's own flags included
        with errors_reported(ctx):
            return super().parse_args(ctx, self._root_options_first(args))

    def _root_options_first(self, args: list[str]) -> list[str]:
        """`recap-label config --config f.toml` as `recap-label --config f.toml config`: the root's
        --config and --lerobot-home are accepted after the command too (no command has options of
        those names; --json is every command's own)."""
        args = list(args)
        i = 0
        while i < len(args) and args[i].startswith("-") and args[i] != "--":  # the root's options
            i += 2 if args[i] in _ROOT_VALUE_OPTIONS else 1
        if i >= len(args) or args[i] not in self.commands:
            return args
        head, rest, moved = args[: i + 1], args[i + 1 :], []
        j = 0
        while j < len(rest) and rest[j] != "--":
            name = rest[j].split("=", 1)[0]
            if name in _ROOT_VALUE_OPTIONS and ("=" in rest[j] or j + 1 < len(rest)):
                take = 1 if "=" in rest[j] else 2
                moved += rest[j : j + take]
                del rest[j : j + take]
            else:
                j += 1
        return head[:i] + moved + head[i:] + rest

    def invoke(self, ctx):
        completion.reset()
        with errors_reported(ctx):
            return super().invoke(ctx)


@contextmanager
def errors_reported(ctx):
    try:
        yield
    except UsageError as exc:
        if json_wanted(ctx):
            print_json({"error": exc.format_message(), "exit_code": exc.exit_code, "kind": USAGE_ERROR_KIND})
        raise  # Click prints its usage lines and the `Error:` line
    except RecapError as exc:
        _fail(ctx, exc)
    except OSError as exc:  # disk full, permissions, … outside the places that say more
        from recap_label.store.fsutil import os_error_message

        command = " ".join(filter(None, ("recap-label", ctx.invoked_subcommand)))
        state = None if completion.is_done() else "nothing was changed"  # else _fail says what was done
        _fail(ctx, FileOperationError(os_error_message(exc, f"running `{command}`", state)))
    except KeyboardInterrupt:  # what is true at this instant: before the commit point, or after it
        _fail(ctx, Interrupted(completion.interrupt_message()))


def json_wanted(ctx) -> bool:
    """The last --json / --no-json given (the command's own flag after the root's), else the
    resolved configuration (flag, environment, file) once the root callback has built it."""
    given = [a for a in ctx.meta.get(_ARGS, []) if a in ("--json", "--no-json")]
    if given:
        return given[-1] == "--json"
    return isinstance(ctx.obj, Settings) and ctx.obj.json


def _fail(ctx, exc: RecapError):
    if not isinstance(exc, Interrupted):  # after the commit point it says what was done first
        exc.message = completion.failed_message(exc.message)
    sys.stderr.write(f"Error: {exc.message}\n")
    sys.stderr.flush()
    if json_wanted(ctx):
        try:
            print_json(exc.to_json())
            sys.stdout.flush()
        except OSError:  # stdout itself failed (a full disk, a closed pipe): the stderr line stands
            _silence_stdout()
    raise typer.Exit(exc.exit_code) from None


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's final flush of what it still buffers
    does not add a traceback-like "Exception ignored" below the one `Error:` line."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
