"""`cache`: what recap-label keeps outside the datasets, listed and cleared.

Two kinds, both under recap-label's cache folder (`$XDG_CACHE_HOME/recap-label`, or the parent of
`--model-cache`): the values a `label --dry-run` computed (`dry-run-values/<dataset>-<hash>/`, reused
by the next `label` of that dataset), and value models converted to safetensors (`models/`, reused
by every run of that checkpoint). Either is only a cache: clearing it costs a later run the time to
infer or convert again, never data. Nothing inside a dataset is touched here.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from dataclasses import asdict, dataclass
from pathlib import Path

from recap_label.config import Settings
from recap_label.errors import BadInput, RecapError
from recap_label.store.fsutil import os_error_message
from recap_label.values.cache import DRY_RUN_VALUES

KINDS = ("dry-run", "models")


@dataclass
class CacheEntry:
    kind: str  # "dry-run" (a dry run's values) or "models" (a converted value model)
    path: str
    bytes: int
    what: str  # the dataset folder's name, or the checkpoint the model was converted from


@dataclass
class CacheReport:
    folder: str  # recap-label's cache folder
    entries: list[CacheEntry]
    cleared: bool  # the entries were removed by this command

    @property
    def total_bytes(self) -> int:
        return sum(e.bytes for e in self.entries)

    def to_json(self) -> dict:
        return {
            "folder": self.folder,
            "entries": [asdict(e) for e in self.entries],
            "bytes": self.total_bytes,
            "cleared": self.cleared,
        }


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def _model_source(path: Path) -> str:
    """The checkpoint a converted model came from, read from its safetensors header (no torch)."""
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(min(n, 1 << 24)))
        meta = header.get("__metadata__") or {}
        return f"{meta.get('source', '?')} ({meta.get('tree', '?')})"
    except (OSError, ValueError, struct.error, AttributeError):
        return "unreadable header"


def kinds_of(kind: str | None) -> tuple[str, ...]:
    """`--kind`: one of KINDS, or None for both."""
    if kind is None:
        return KINDS
    if kind not in KINDS:
        raise BadInput(f"--kind {kind!r} is not a cache kind; pass one of {', '.join(KINDS)}, or leave it out for both")
    return (kind,)


def cache_entries(settings: Settings, kinds: tuple[str, ...] = KINDS) -> list[CacheEntry]:
    out: list[CacheEntry] = []
    dry = settings.model_cache.parent / DRY_RUN_VALUES
    if "dry-run" in kinds and dry.is_dir():
        for p in sorted(dry.iterdir()):
            if p.is_dir() and not p.name.startswith("."):
                out.append(CacheEntry("dry-run", str(p), _size(p), p.name.rsplit("-", 1)[0]))
    if "models" in kinds and settings.model_cache.is_dir():
        for p in sorted(settings.model_cache.glob("*.safetensors")):
            if not p.name.startswith("."):
                out.append(CacheEntry("models", str(p), _size(p), _model_source(p)))
    return out


def list_caches(settings: Settings, kinds: tuple[str, ...] = KINDS) -> CacheReport:
    return CacheReport(str(settings.model_cache.parent), cache_entries(settings, kinds), cleared=False)


def clear_caches(settings: Settings, kinds: tuple[str, ...] = KINDS) -> CacheReport:
    """Remove the entries of `kinds`; what was removed is reported (an error names the one that
    could not be, the ones before it are gone: each is only a cache)."""
    entries = cache_entries(settings, kinds)
    for e in entries:
        try:
            if os.path.isdir(e.path):
                shutil.rmtree(e.path)
            else:
                os.unlink(e.path)
        except FileNotFoundError:
            pass  # removed meanwhile (another clear, or a label run that folded it in)
        except OSError as exc:
            done = entries.index(e)
            state = f"{done} entr{'y' if done == 1 else 'ies'} before it removed"
            raise RecapError(os_error_message(exc, f"removing {e.path} from the cache", state)) from None
    return CacheReport(str(settings.model_cache.parent), entries, cleared=True)
