"""Where the benchmarks keep their generated datasets, and the scratch copies they label."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def default_cache_dir() -> Path:
    """Outside the repository, so a checkout stays small and the data survives a fresh clone."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "recap-label" / "bench"


def scratch_copy(src: Path, dst: Path) -> Path:
    """A writable copy of a cached dataset: data/ and meta/ copied, videos/ hard-linked (never written)."""
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    for entry in src.iterdir():
        if entry.name == "videos":
            shutil.copytree(entry, dst / entry.name, copy_function=os.link)
        elif entry.is_dir():
            shutil.copytree(entry, dst / entry.name)
        else:
            shutil.copy2(entry, dst / entry.name)
    return dst
