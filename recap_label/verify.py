"""`verify`: the label breakdown plus the invariants a labeled copy must satisfy."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recap_label.advantage import episode_kinds
from recap_label.config import Settings
from recap_label.copying import find_symlinks
from recap_label.dataset import LeRobotDataset
from recap_label.lineage import read_lineage, source_unchanged
from recap_label.report import Breakdown, breakdown, read_label_arrays


@dataclass
class Check:
    name: str
    status: str  # "pass" | "fail" | "skip"
    detail: str = ""


@dataclass
class VerifyReport:
    dataset: Path
    breakdown: Breakdown
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    active_run: dict | None = None

    @property
    def ok(self) -> bool:
        return all(c.status != "fail" for c in self.checks)

    def to_json(self, with_episodes: bool) -> dict:
        return {
            "dataset": str(self.dataset),
            "ok": self.ok,
            "breakdown": self.breakdown.to_json(with_episodes),
            "checks": [c.__dict__ for c in self.checks],
            "notes": self.notes,
            "active_run": None if self.active_run is None else self.active_run.get("id"),
        }


def demo_labels_digest(episode: np.ndarray, human: np.ndarray, labels: np.ndarray) -> str:
    """sha256 of the labels of demo episodes, in (episode, row) order: they must never change."""
    demo_rows = ~episode_kinds(episode, human).rollout_rows
    order = np.argsort(episode[demo_rows], kind="stable")
    h = hashlib.sha256()
    for value in labels[demo_rows][order]:
        h.update(("\x01" if value is None else str(value)).encode() + b"\0")
    return h.hexdigest()


def active_label_run(record: dict | None) -> dict | None:
    if not record:
        return None
    runs = [r for r in record.get("runs", []) if r.get("kind") == "label" and not r.get("rolled_back") and not r.get("dry_run")]
    return runs[-1] if runs else None


def finish_interrupted(ds: LeRobotDataset) -> tuple[LeRobotDataset, list[str], Check | None]:
    """Complete or undo an interrupted commit before reading (unless its writer is still running)."""
    from recap_label.errors import LockedError
    from recap_label.lock import dataset_lock
    from recap_label.writeback import pending_commit, recover, stale_staged_files

    if pending_commit(ds.root) is None and not stale_staged_files(ds.root):
        return ds, [], None
    try:
        with dataset_lock(ds.root, "verify"):
            note = recover(ds.root)
    except LockedError as exc:
        return ds, [], Check("no write in progress", "fail", exc.message)
    return LeRobotDataset.open(ds.root), [f"found an interrupted write: {note}"] if note else [], None


def verify_dataset(ds: LeRobotDataset, settings: Settings, with_episodes: bool = False) -> VerifyReport:
    ds, notes, busy = finish_interrupted(ds)
    episode, human, labels = read_label_arrays(ds, settings.human_col, settings.adv_col)
    b = breakdown(episode, human, labels, with_episodes)
    report = VerifyReport(ds.root, b, notes=notes)
    checks = report.checks
    if busy is not None:
        checks.append(busy)

    links = find_symlinks(ds.root)
    checks.append(
        Check("standalone (no symlinks)", "fail" if links else "pass", f"{len(links)} symlink(s), e.g. {links[0]}" if links else "no symlinks")
    )

    record = read_lineage(ds.root)
    if record is None:
        checks.append(Check("source unchanged since copy", "skip", "no lineage record: not a recap-label copy"))
    else:
        same, detail = source_unchanged(record)
        checks.append(Check("source unchanged since copy", "pass" if same else "fail", detail))

    run = active_label_run(record)
    report.active_run = run
    if run is None:
        checks.append(Check("labels (after a label run)", "skip", "no label run recorded"))
        return report

    auto_none = b.autonomous.get("none", 0) + b.autonomous.get("other", 0)
    checks.append(Check("no 'none' among autonomous frames", "fail" if auto_none else "pass", f"{auto_none} frame(s)"))
    human_neg = b.intervention.get("negative", 0)
    checks.append(Check("no 'negative' among intervention frames", "fail" if human_neg else "pass", f"{human_neg} frame(s)"))
    expected_demo = run.get("demo_labels_sha256")
    if expected_demo:
        same = demo_labels_digest(episode, human, labels) == expected_demo
        checks.append(Check("demo episodes unchanged", "pass" if same else "fail", "labels as before the run" if same else "demo labels changed"))
    ratio = float(run["settings"]["positive_ratio"])
    n_auto = b.autonomous.get("positive", 0) + b.autonomous.get("negative", 0)
    pos = b.autonomous.get("positive", 0)
    tolerance = max(1, len(run.get("thresholds", {}))) if run["settings"].get("threshold_scope") == "task" else 1
    off = pos - ratio * n_auto
    detail = f"{pos:,} of {n_auto:,} ({100 * pos / max(n_auto, 1):.2f} %) vs target {100 * ratio:g} % ({off:+.1f} frames)"
    status = "pass" if abs(off) <= tolerance else "fail"
    if status == "fail" and off > 0:
        tied = _tied_at_threshold(ds, run)
        if tied and pos - tied <= ratio * n_auto + tolerance:
            status, detail = "pass", detail + f"; {tied:,} frames tie exactly at the threshold (ties go positive, as in the reference)"
    checks.append(Check("autonomous positive share = target", status, detail))
    return report


def _tied_at_threshold(ds: LeRobotDataset, run: dict) -> int:
    """Autonomous frames whose advantage equals their threshold exactly (from the values sidecar)."""
    from recap_label.values import read_sidecar

    side = read_sidecar(ds.root)
    thresholds = [t for t in (run.get("thresholds") or {}).values() if t is not None]
    if side is None or not thresholds:
        return 0
    adv = side[1]["advantage"].to_numpy(zero_copy_only=False)
    labels = np.asarray(side[1]["label"].to_numpy(zero_copy_only=False), dtype=object)
    # count frames at a threshold value beyond the first one (the one the percentile lands on)
    return int(sum(max(np.count_nonzero((adv == np.float32(t)) & (labels == "positive")) - 1, 0) for t in thresholds))
