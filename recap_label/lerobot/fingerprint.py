"""A dataset's fingerprint at copy time, and the check that its source is still the same.

Every file the copy took is recorded with its size, modification time and sha256 (copy hashes
each file while copying, so this is free). The check compares every file's size and mtime, and
the content of the files labels are computed from (data/ and meta/) and of every small file;
large videos are compared by size and mtime only, so a verify does not re-read gigabytes.
"""

from __future__ import annotations

import os
from pathlib import Path

from recap_label.store.fsutil import sha256_file

CONTENT_LIMIT = 1 << 20  # files up to this size are compared by content wherever they are


def copy_fingerprint(files: list[tuple[str, Path]], file_hashes: dict[str, str]) -> dict[str, dict]:
    """{relative path: {size, mtime_ns, sha256}} for every copied file (real source path given)."""
    out = {}
    for rel, real in files:
        st = os.stat(real)
        out[rel] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": file_hashes[rel]}
    return out


def by_content(rel: str, expect: dict) -> bool:
    """Compare this file's bytes (not only its size and mtime)?"""
    return "mtime_ns" not in expect or rel.split("/")[0] in ("data", "meta") or expect["size"] <= CONTENT_LIMIT


def source_unchanged(source_path: str | Path, fingerprint: dict[str, dict]) -> tuple[str, str]:
    """Compare the source with the fingerprint recorded at copy time: ("pass" | "fail" | "warn",
    detail). A source that is gone (moved or archived after copying) is a warning: the copy is
    standalone, only its origin can no longer be checked."""
    src = Path(source_path)
    if not src.exists():
        return (
            "warn",
            f"source {src} no longer exists (moved or archived after the copy?); the copy is standalone, its origin "
            f"cannot be compared",
        )
    content = 0
    for rel, expect in fingerprint.items():
        path = src / rel
        if not path.exists():
            return "fail", f"{rel} is missing from the source"
        st = path.stat()
        if st.st_size != expect["size"]:
            return (
                "fail",
                f"{rel} changed in the source since the copy (size {expect['size']:,} → {st.st_size:,} bytes)",
            )
        if by_content(rel, expect):
            content += 1
            if sha256_file(path) != expect["sha256"]:
                return "fail", f"{rel} changed in the source since the copy (its content differs)"
        elif st.st_mtime_ns != expect["mtime_ns"]:
            return "fail", f"{rel} changed in the source since the copy (modified since)"
    n = len(fingerprint)
    if content == n:
        return "pass", f"all {n} files match by content"
    return (
        "pass",
        f"all {n} files match: {content} by content (data, meta and files up to 1 MiB), {n - content} larger ones by "
        f"size and modification time",
    )
