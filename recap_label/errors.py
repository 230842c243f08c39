"""Domain errors. Each carries one user-facing line: what is wrong and what to do.

The CLI boundary (recap_label/cli/boundary.py) turns any RecapError into `Error: <message>` and
its exit code; nothing else in the package prints errors or calls sys.exit. Each class names its
`kind`: the `kind` of the JSON error object under --json, an API for scripts (README "Exit codes"
lists every kind; tests/test_exit_codes.py keeps the two in step).
"""

from __future__ import annotations


class RecapError(Exception):
    """An expected failure with a one-line message for the user."""

    kind = "recap_error"
    exit_code = 2

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def to_json(self) -> dict:
        return {"error": self.message, "exit_code": self.exit_code, "kind": self.kind}


class BadInput(RecapError):
    """The user's input (paths, flags, data) cannot be used as given."""

    kind = "bad_input"


class DatasetError(BadInput):
    """The dataset on disk is missing, malformed or unsupported."""

    kind = "dataset_error"


class ConfigError(BadInput):
    """A configuration file, environment variable or flag is invalid."""

    kind = "config_error"


class CheckpointError(BadInput):
    """A value-model checkpoint is missing, incomplete or does not fit the architecture."""

    kind = "checkpoint_error"


class TokenizerError(BadInput):
    """The SentencePiece tokenizer is missing or unreadable."""

    kind = "tokenizer_error"


class DeviceError(BadInput):
    """The requested compute device is not available."""

    kind = "device_error"


class LockedError(RecapError):
    """Another recap-label process holds the dataset lock."""

    kind = "locked_error"


class ChangedWhileReading(LockedError):
    """Another command wrote the dataset while it was being read (verify): what was read may mix
    old and new files; nothing is known to be wrong, read it again."""

    kind = "changed_while_reading"


class UnsafeWriteError(RecapError):
    """A write would touch data outside the labeled copy (symlink, shared inode, original)."""

    kind = "unsafe_write_error"


class Interrupted(RecapError):
    """Ctrl-C: the message says what state the interrupted command left behind."""

    kind = "interrupted"
    exit_code = 130


class FileOperationError(RecapError):
    """The system refused a file operation (disk full, permission denied, ...) where no closer
    message was given; the boundary makes it of any OSError that reaches it."""

    kind = "os_error"


def warn(message: str) -> None:
    """A likely mistake that does not stop the command: one `warning:` line on stderr, at once."""
    import sys

    sys.stderr.write(f"warning: {message}\n")
    sys.stderr.flush()


def first_line(exc: BaseException) -> str:
    """The first line of an exception's text, or its type name when it has none."""
    lines = str(exc).splitlines()
    return lines[0] if lines and lines[0].strip() else type(exc).__name__
