"""The invariants a labeled copy must satisfy, with the label breakdown: what `verify` reports
and what `rollback --iteration` checks on the prior iteration before pointing back at it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recap_label.config import Settings
from recap_label.errors import LockedError
from recap_label.lerobot.columns import LabelColumns, read_label_columns
from recap_label.lerobot.dataset import DatasetFiles, missing_summary
from recap_label.lerobot.fingerprint import source_unchanged
from recap_label.rule import demo_labels_digest, tied_at_threshold
from recap_label.store.fsutil import find_symlinks
from recap_label.store.lineage import LabelRun, read_lineage
from recap_label.store.lock import dataset_lock, live_holder, lock_path, read_holder
from recap_label.store.writeback import pending_commit, recover, stale_staged_files
from recap_label.summary import Breakdown, breakdown
from recap_label.values.cache import kept_parts, read_sidecar


@dataclass
class Check:
    name: str
    status: str  # "pass" | "fail" | "skip" | "warn" (worth knowing, not a failed invariant)
    detail: str = ""


@dataclass
class VerifyReport:
    dataset: Path
    breakdown: Breakdown
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    active_run: LabelRun | None = None
    value_model: "object | None" = None  # value_check.ValueModelSection, from the values sidecar
    columns: LabelColumns | None = field(
        default=None, repr=False
    )  # as read by the checks; the value section reuses them

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
            "active_run": None if self.active_run is None else self.active_run.id,
            "value_model": None if self.value_model is None else self.value_model.to_json(),
        }


def repair_interrupted(ds: DatasetFiles) -> tuple[DatasetFiles, list[str], Check | None]:
    """`verify --repair`: complete or undo an interrupted commit (unless its writer still runs)."""
    if pending_commit(ds.root) is None and not stale_staged_files(ds.root):
        return ds, [], None
    try:
        with dataset_lock(ds.root, "verify --repair"):
            note = recover(ds.root)
    except LockedError as exc:
        return ds, [], Check("no write in progress", "fail", exc.message)
    return DatasetFiles.open(ds.root), [f"found an interrupted write: {note}"] if note else [], None


def interrupted_state(ds: DatasetFiles) -> tuple[list[str], list[Check]]:
    """Read-only: a live writer, a pending commit, staged leftovers, as facts with what to do."""
    notes, checks = [], []
    holder = live_holder(ds.root)
    journal = pending_commit(ds.root)
    if holder is not None:
        checks.append(
            Check(
                "no write in progress",
                "fail",
                f"`recap-label {holder.get('command')}` (pid {holder.get('pid')} on {holder.get('host')}) is writing "
                f"it since {holder.get('started')}; verify again when it has finished",
            )
        )
    elif journal is not None:
        n = len(journal["entries"])
        what = "completes it" if journal["mode"] == "redo" else "puts the old files back"
        checks.append(
            Check(
                "no interrupted commit",
                "fail",
                f"{journal['run']} was interrupted while committing {n} file(s) ({journal['mode']}); `recap-label "
                f"verify --repair {ds.root}` "
                f"(or the next label or rollback) {what}",
            )
        )
    else:
        stale = stale_staged_files(ds.root)
        if stale:
            notes.append(
                f"{len(stale)} staged file(s) of an interrupted run are left (the data is unchanged by it); `verify "
                f"--repair` removes them"
            )
    dead = read_holder(lock_path(ds.root)) if holder is None else None
    if dead is not None:
        notes.append(
            f"a stale lock is left by `recap-label {dead.get('command')}` (pid {dead.get('pid')} on "
            f"{dead.get('host')}, started {dead.get('started')}), "
            "which is no longer running; the next label or rollback clears it"
        )
    return notes, checks


def verify_dataset(
    ds: DatasetFiles, settings: Settings, with_episodes: bool = False, repair: bool = False
) -> VerifyReport:
    """The breakdown and the invariants. Read-only, unless `repair` finishes an interrupted commit."""
    if repair:
        ds, notes, busy = repair_interrupted(ds)
        more, state = interrupted_state(ds)
        notes += more
    else:
        busy = None
        notes, state = interrupted_state(ds)
    notes += scoring_notes(ds.root)
    missing = ds.missing_files()
    if any(p.suffix == ".parquet" for p in missing):
        ds.require_complete()  # without every data file there is no breakdown to report
    cols = read_label_columns(ds, human_col=settings.human_col, adv_col=settings.adv_col)
    b = breakdown(cols.episode, cols.human, cols.labels, with_episodes, kinds=cols.kinds)
    report = VerifyReport(ds.root, b, notes=notes, columns=cols)
    checks = report.checks
    if busy is not None:
        checks.append(busy)
    checks += state

    checks.append(
        Check(
            "every file meta/ names is present",
            "fail" if missing else "pass",
            f"{missing_summary(ds.root, missing)}; restore them from the source dataset, or make a new copy"
            if missing
            else f"{len(ds.data_files)} data file(s) and "
            f"{len({r.path for e in ds.episodes.values() for r in e.videos.values()})} video file(s)",
        )
    )

    links = find_symlinks(ds.root)
    checks.append(
        Check(
            "standalone (no symlinks)",
            "fail" if links else "pass",
            f"{len(links)} symlink(s), e.g. {links[0]}" if links else "no symlinks",
        )
    )

    record = read_lineage(ds.root)
    if record is None:
        checks.append(Check("source unchanged since copy", "skip", "no lineage record: not a recap-label copy"))
    else:
        status, detail = (
            source_unchanged(record.source.path, record.source.fingerprint)
            if record.source
            else ("pass", "labeled in place: no source recorded")
        )
        checks.append(Check("source unchanged since copy", status, detail))

    run = record.active_label_run() if record else None
    report.active_run = run
    if run is None:
        undone = [r for r in (record.runs if record else []) if r.kind == "label"]
        detail = (
            f"no label run on disk: {len(undone)} recorded, all undone (the labels are those it was copied with)"
            if undone
            else "no label run recorded"
        )
        checks.append(Check("labels (after a label run)", "skip", detail))
        return report

    auto_none = b.autonomous.get("none", 0) + b.autonomous.get("other", 0)
    checks.append(Check("no 'none' among autonomous frames", "fail" if auto_none else "pass", f"{auto_none} frame(s)"))
    human_neg = b.intervention.get("negative", 0)
    checks.append(
        Check("no 'negative' among intervention frames", "fail" if human_neg else "pass", f"{human_neg} frame(s)")
    )
    expected_demo = run.demo_labels_sha256
    if expected_demo:
        same = demo_labels_digest(cols.episode, cols.human, cols.labels, cols.kinds) == expected_demo
        checks.append(
            Check(
                "demo episodes unchanged",
                "pass" if same else "fail",
                "labels as before the run" if same else "demo labels changed",
            )
        )
    ratio = float(run.settings.positive_ratio)
    n_auto = b.autonomous.get("positive", 0) + b.autonomous.get("negative", 0)
    pos = b.autonomous.get("positive", 0)
    tolerance = max(1, len(run.thresholds)) if run.settings.threshold_scope == "task" else 1
    off = pos - ratio * n_auto
    detail = (
        f"{pos:,} of {n_auto:,} ({100 * pos / max(n_auto, 1):.2f} %) vs target {100 * ratio:g} % ({off:+.1f} frames)"
    )
    status = "pass" if abs(off) <= tolerance else "fail"
    if status == "fail" and off > 0:
        tied = _tied_at_threshold(ds, run)
        if tied and pos - tied <= ratio * n_auto + tolerance:
            status, detail = (
                "pass",
                detail + f"; {tied:,} frames tie exactly at the threshold (ties go positive, as in the reference)",
            )
    checks.append(Check("autonomous positive share = target", status, detail))
    return report


def _tied_at_threshold(ds: DatasetFiles, run: LabelRun) -> int:
    """Autonomous frames tied exactly at their threshold, from the values sidecar."""
    side = read_sidecar(ds.root)
    thresholds = [t for t in (run.thresholds or {}).values() if t is not None]
    if side is None or not thresholds:
        return 0
    adv = side[1]["advantage"].to_numpy(zero_copy_only=False)
    labels = np.asarray(side[1]["label"].to_numpy(zero_copy_only=False), dtype=object)
    return tied_at_threshold(adv, labels, thresholds)


def scoring_notes(root: Path) -> list[str]:
    """Value parts not labeled yet: of an interrupted inference (how many episodes, what resumes
    them), or of sharded scoring (which shards are missing)."""
    notes = []
    for parts in kept_parts(root):
        prov = parts.provenance
        split = parts.split()
        if split is None:
            done = len(parts.done())
            if done:
                ckpt = prov.get("checkpoint", "the value model")
                notes.append(
                    f"value parts of an interrupted inference are kept: {done} episode(s) scored with {ckpt} (ema "
                    f"{prov.get('ema')}, {prov.get('precision')}); "
                    "`recap-label label` with the same value model resumes from them (--recompute ignores them); the "
                    "labels are unchanged by them"
                )
            continue
        missing = parts.shards_not_done()
        n = split["num_shards"]
        if missing:
            notes.append(
                f"value parts: shards {', '.join(map(str, missing))} of {n} missing (scoring running or "
                f"interrupted); labels are written once all are done"
            )
        else:
            notes.append(
                f"value parts: all {n} shards scored; run `recap-label label` without --shard to write the labels"
            )
    return notes
