"""Domain errors. Each carries one user-facing line: what is wrong and what to do.

The CLI boundary turns any RecapError into `Error: <message>` and its exit code;
nothing else in the package prints errors or calls sys.exit.
"""

from __future__ import annotations


class RecapError(Exception):
    """An expected failure with a one-line message for the user."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class BadInput(RecapError):
    """The user's input (paths, flags, data) cannot be used as given."""


class DatasetError(BadInput):
    """The dataset on disk is missing, malformed or unsupported."""


class ConfigError(BadInput):
    """A configuration file, environment variable or flag is invalid."""


class CheckpointError(BadInput):
    """A value-model checkpoint is missing, incomplete or does not fit the architecture."""


class TokenizerError(BadInput):
    """The SentencePiece tokenizer is missing or unreadable."""


class DeviceError(BadInput):
    """The requested compute device is not available."""


class LockedError(RecapError):
    """Another recap-label process holds the dataset lock."""


class UnsafeWriteError(RecapError):
    """A write would touch data outside the labeled copy (symlink, shared inode, original)."""


class Interrupted(RecapError):
    """Ctrl-C: the message says what state the interrupted command left behind."""

    exit_code = 130


def warn(message: str) -> None:
    """A likely mistake that does not stop the command: one `warning:` line on stderr, at once."""
    import sys

    sys.stderr.write(f"warning: {message}\n")
    sys.stderr.flush()


def first_line(exc: BaseException) -> str:
    """The first line of an exception's text, or its type name when it has none."""
    lines = str(exc).splitlines()
    return lines[0] if lines and lines[0].strip() else type(exc).__name__
