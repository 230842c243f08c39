"""Every path recap-label keeps inside a dataset, named once.

All state lives under `<dataset>/meta/recap_label/`, which `copy` skips: a new iteration starts
without the runs, caches and locks of the one it was copied from.
"""

from __future__ import annotations

from pathlib import Path

STATE_DIR = Path("meta") / "recap_label"
INFO_JSON = Path("meta") / "info.json"

LINEAGE_FILE = STATE_DIR / "lineage.json"  # the copy's origin and its run history (store.lineage)
JOURNAL = STATE_DIR / "journal.json"  # a commit in progress (store.writeback)
LOCK_FILE = STATE_DIR / "lock"  # the one writer and what it is doing (store.lock)
SIDECAR = STATE_DIR / "values.parquet"  # V, A and label of the last label run (values.cache)
EARLIER_SIDECARS = STATE_DIR / "values-earlier"  # sidecars of earlier value sources, a bounded few (values.cache)
PARTIAL_DIR = STATE_DIR / "values-partial"  # per-episode values of an inference in progress (values.parts)
RUNS_DIR = STATE_DIR / "runs"  # per run: what a rollback needs
COPY_PENDING = STATE_DIR / "copy-pending.json"  # a copy renamed into place, not yet registered or reported
REPORT_PENDING = STATE_DIR / "report-pending.json"  # a label/rollback run done, its report not yet printed


def run_dir(run_id: str) -> Path:
    return RUNS_DIR / run_id


def prior_labels_file(run_id: str) -> Path:
    """The label column of every file a run rewrote, as it was before the run."""
    return run_dir(run_id) / "prior_labels.parquet"


def info_prior_file(run_id: str) -> Path:
    """meta/info.json before a run that added the label feature to it."""
    return run_dir(run_id) / "info.json.prior"
