"""Lineage: where a labeled copy came from, its iteration number, and the runs made on it.

The record lives in `<dataset>/meta/recap_label/lineage.json` and is only ever replaced
atomically. Iteration names follow the manual convention: `<base>_vlm_label`,
`<base>_vlm_label_v2`, `_v3`, …
"""

from __future__ import annotations

import datetime as _dt
import os
import re
from pathlib import Path

import pyarrow.compute as pc

from recap_label import __version__
from recap_label.dataset import LeRobotDataset
from recap_label.errors import DatasetError
from recap_label.fsutil import sha256_file, write_json_atomic

STATE_DIR = Path("meta") / "recap_label"
LINEAGE_FILE = STATE_DIR / "lineage.json"
LABEL_SUFFIX = "_vlm_label"
_SUFFIX_RE = re.compile(r"^(?P<base>.+?)_vlm_label(?:_v(?P<n>\d+))?$")


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def split_iteration_name(name: str) -> tuple[str, int]:
    """`vial_vlm_label_v3` → ("vial", 3); `vial_vlm_label` → ("vial", 1); `vial` → ("vial", 0)."""
    m = _SUFFIX_RE.match(name)
    if not m:
        return name, 0
    return m.group("base"), int(m.group("n") or 1)


def iteration_name(base: str, n: int) -> str:
    return base + LABEL_SUFFIX if n <= 1 else f"{base}{LABEL_SUFFIX}_v{n}"


def default_destination(src: Path) -> tuple[Path, int]:
    """Next free iteration folder beside SRC, and its iteration number."""
    base, n = split_iteration_name(src.name)
    record = read_lineage(src)
    if record is not None:
        n = max(n, int(record.get("iteration", 1)))
    candidate = n + 1
    while (src.parent / iteration_name(base, candidate)).exists() or (src.parent / iteration_name(base, candidate)).is_symlink():
        candidate += 1
    return src.parent / iteration_name(base, candidate), max(candidate, 1)


def read_lineage(root: Path) -> dict | None:
    path = root / LINEAGE_FILE
    if not path.exists():
        return None
    import json

    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"lineage record {path} is malformed ({exc}); restore it or make a fresh copy with `recap-label copy`") from None
    if not isinstance(record, dict):
        raise DatasetError(f"lineage record {path} is malformed; restore it or make a fresh copy with `recap-label copy`")
    return record


def write_lineage(root: Path, record: dict) -> None:
    (root / STATE_DIR).mkdir(parents=True, exist_ok=True)
    write_json_atomic(root / LINEAGE_FILE, record)


def label_counts(ds: LeRobotDataset, adv_col: str, files=None) -> dict[str, int] | None:
    """adv_ind value counts over the whole dataset, or None when the column is absent."""
    paths = files if files is not None else ds.data_files
    if not paths or adv_col not in ds.schema(paths[0]).names:
        return None
    column = ds.read_columns([adv_col], paths)[adv_col]
    counts = pc.value_counts(column).to_pylist()
    return {("null" if c["values"] is None else str(c["values"])): int(c["counts"]) for c in sorted(counts, key=lambda c: str(c["values"]))}


def label_column_digest(ds: LeRobotDataset, adv_col: str) -> str | None:
    """sha256 over the label column of every data file, in file order (None if absent)."""
    import hashlib

    if not ds.data_files or adv_col not in ds.schema(ds.data_files[0]).names:
        return None
    h = hashlib.sha256()
    for path in ds.data_files:
        values = ds.read_columns([adv_col], [path])[adv_col].to_pylist()
        h.update(path.relative_to(ds.root).as_posix().encode())
        h.update(b"\0".join(b"\x01" if v is None else v.encode() for v in values))
    return h.hexdigest()


def data_fingerprint(ds: LeRobotDataset, file_hashes: dict[str, str] | None = None) -> dict[str, dict]:
    """{relative path: {size, sha256}} for every data parquet and meta/info.json."""
    out = {}
    paths = [*ds.data_files, ds.root / "meta" / "info.json"]
    for path in paths:
        rel = path.relative_to(ds.root).as_posix()
        digest = (file_hashes or {}).get(rel) or sha256_file(path)
        out[rel] = {"size": path.stat().st_size, "sha256": digest}
    return out


def new_lineage(src_arg: str, src: Path, ds: LeRobotDataset, iteration: int, parent: str | None, fingerprint: dict, adv_col: str, copy_stats: dict) -> dict:
    return {
        "tool": "recap-label",
        "tool_version": __version__,
        "format": 1,
        "created": now_iso(),
        "iteration": iteration,
        "parent": parent,
        "source": {
            "given": src_arg,
            "path": str(src.absolute()),
            "realpath": os.path.realpath(src),
            "codebase_version": ds.version,
            "fingerprint": fingerprint,
            "label_column": adv_col,
            "label_column_sha256": label_column_digest(ds, adv_col),
        },
        "copy": copy_stats,
        "runs": [],
    }


def source_unchanged(record: dict) -> tuple[bool, str]:
    """Recompute the source fingerprint recorded at copy time: (unchanged, detail)."""
    src = Path(record["source"]["path"])
    fingerprint = record["source"].get("fingerprint", {})
    if not src.exists():
        return False, f"source {src} no longer exists"
    for rel, expect in fingerprint.items():
        path = src / rel
        if not path.exists():
            return False, f"{rel} is missing from the source"
        if path.stat().st_size != expect["size"] or sha256_file(path) != expect["sha256"]:
            return False, f"{rel} changed in the source since the copy"
    return True, f"{len(fingerprint)} files match"

