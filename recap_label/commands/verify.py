"""`verify`: the label breakdown and the invariants of a labeled copy, and optionally a plot."""

from __future__ import annotations

from pathlib import Path

from recap_label.config import Settings
from recap_label.invariants import VerifyReport, verify_dataset
from recap_label.lerobot.dataset import DatasetFiles


def run_verify(
    ds_root: Path, settings: Settings, *, with_episodes: bool = False, plot: Path | None = None, repair: bool = False
) -> VerifyReport:
    """Read-only, unless `repair`: then an interrupted commit is completed (or undone) first."""
    if plot is not None:
        from recap_label.plotting import check_plot_destination

        check_plot_destination(plot)  # before the work, not after it
    ds = DatasetFiles.open(ds_root)
    report = verify_dataset(ds, settings, with_episodes=with_episodes, repair=repair)
    if repair:
        ds = DatasetFiles.open(report.dataset)  # --repair may have rewritten files: read what is on disk now
    from recap_label.value_check import section_of_dataset

    report.value_model, why = section_of_dataset(ds, settings, report.active_run, cols=report.columns)
    if why:
        report.notes.append(why)
    if plot is not None:
        from recap_label.plotting import plot_labels

        plot_labels(ds, settings.human_col, report.active_run, plot)
        report.notes.append(f"plot written to {plot}")
    return report
