"""`verify`: the label breakdown and the invariants of a labeled copy, and optionally a plot."""

from __future__ import annotations

from pathlib import Path

from recap_label.config import Settings
from recap_label.errors import RecapError
from recap_label.invariants import VerifyReport, repair_interrupted, verify_dataset
from recap_label.lerobot.dataset import DatasetFiles
from recap_label.store import snapshot


def run_verify(
    ds_root: Path, settings: Settings, *, with_episodes: bool = False, plot: Path | None = None, repair: bool = False
) -> VerifyReport:
    """Read-only, unless `repair`: then an interrupted commit is completed (or undone) first.
    A commit by another command while verify reads is noticed (store.snapshot): verify then says
    so and asks to run it again (ChangedWhileReading) instead of reporting checks on a mix of old
    and new files."""
    if plot is not None:
        from recap_label.plotting import check_plot_destination

        check_plot_destination(plot)  # before the work, not after it
    ds = DatasetFiles.open(ds_root)
    repaired, busy = [], None
    if repair:  # first: what follows reads the dataset as it is after the repair
        ds, repaired, busy = repair_interrupted(ds)
    before = snapshot.take(ds.root)  # verify reads without the lock: a commit may land meanwhile
    try:
        report = _read_and_check(DatasetFiles.open(ds.root), settings, with_episodes, plot)
    except RecapError as exc:
        snapshot.require_still(ds.root, before, failure=exc)  # a file replaced mid-read is not damaged
        raise
    snapshot.require_still(ds.root, before)
    report.notes[:0] = repaired
    if busy is not None:
        report.checks.insert(0, busy)
    return report


def _read_and_check(ds: DatasetFiles, settings: Settings, with_episodes: bool, plot: Path | None) -> VerifyReport:
    report = verify_dataset(ds, settings, with_episodes=with_episodes)
    from recap_label.value_check import section_of_dataset

    report.value_model, why = section_of_dataset(ds, settings, report.active_run, cols=report.columns)
    if why:
        report.notes.append(why)
    if plot is not None:
        from recap_label.plotting import plot_labels

        plot_labels(ds, settings.human_col, report.active_run, plot)
        report.notes.append(f"plot written to {plot}")
    return report
