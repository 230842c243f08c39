"""A dataset's fingerprint at copy time, and the check that its source is still the same."""

from __future__ import annotations

from pathlib import Path

from recap_label.lerobot.dataset import LeRobotDataset
from recap_label.store.fsutil import sha256_file


def data_fingerprint(ds: LeRobotDataset, file_hashes: dict[str, str] | None = None) -> dict[str, dict]:
    """{relative path: {size, sha256}} for every data parquet and meta/info.json."""
    out = {}
    for path in [*ds.data_files, ds.root / "meta" / "info.json"]:
        rel = path.relative_to(ds.root).as_posix()
        digest = (file_hashes or {}).get(rel) or sha256_file(path)
        out[rel] = {"size": path.stat().st_size, "sha256": digest}
    return out


def source_unchanged(source_path: str | Path, fingerprint: dict[str, dict]) -> tuple[bool, str]:
    """Recompute the fingerprint recorded at copy time: (unchanged, detail)."""
    src = Path(source_path)
    if not src.exists():
        return False, f"source {src} no longer exists"
    for rel, expect in fingerprint.items():
        path = src / rel
        if not path.exists():
            return False, f"{rel} is missing from the source"
        if path.stat().st_size != expect["size"] or sha256_file(path) != expect["sha256"]:
            return False, f"{rel} changed in the source since the copy"
    return True, f"{len(fingerprint)} files match"
