"""The lineage record of a labeled copy: where it came from, its iteration, and every run on it.

`meta/recap_label/lineage.json` is read and written only through the typed records here
(`Lineage`, `LabelRun`, `RollbackRun`); nobody else touches the JSON. The file is replaced
atomically, and during a label or rollback commit it is staged in the same journal as the data
files, so the history and the labels on disk never disagree.

Schema versions (`format`): 1 = recap-label 0.1.0; 2 = the same shape, written by these
records; 3 adds `original` (the identity of the original dataset the line of copies started
from), written at copy time. All are read (`lerobot.line` derives a missing `original` from the
parent chain); keys this version does not know are kept and written back unchanged.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from recap_label import __version__
from recap_label.errors import DatasetError
from recap_label.store.fsutil import write_bytes_atomic
from recap_label.store.paths import LINEAGE_FILE, STATE_DIR

FORMAT = 3
READABLE_FORMATS = (1, 2, 3)

LABEL_SUFFIX = "_vlm_label"
_SUFFIX_RE = re.compile(r"^(?P<base>.+?)_vlm_label(?:_v(?P<n>\d+))?$")


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# -- iteration names ---------------------------------------------------------------------------


def split_iteration_name(name: str) -> tuple[str, int]:
    """`vial_vlm_label_v3` → ("vial", 3); `vial_vlm_label` → ("vial", 1); `vial` → ("vial", 0)."""
    m = _SUFFIX_RE.match(name)
    if not m:
        return name, 0
    return m.group("base"), int(m.group("n") or 1)


def iteration_name(base: str, n: int) -> str:
    return base + LABEL_SUFFIX if n <= 1 else f"{base}{LABEL_SUFFIX}_v{n}"


# -- records -----------------------------------------------------------------------------------


class _Record:
    """JSON round trip for the dataclasses below: known keys typed, unknown keys kept in `extra`."""

    _optional: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def from_json(cls, data: Any, where: str):
        if not isinstance(data, dict):
            raise _malformed(where, "is not an object")
        known = {f.name for f in fields(cls) if f.name != "extra"}
        missing = [k for k in known if k not in data and k not in cls._optional and not _has_default(cls, k)]
        if missing:
            raise _malformed(where, f"has no {missing[0]!r}")
        kwargs = {k: data[k] for k in known if k in data}
        extra = {k: v for k, v in data.items() if k not in known and k != "kind"}
        return cls(**kwargs, extra=extra)

    def to_json(self) -> dict:
        out: dict[str, Any] = {}
        kind = getattr(self, "kind", None)
        if kind:
            out["kind"] = kind
        for f in fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            out[f.name] = value.to_json() if isinstance(value, _Record) else value
        out.update(self.extra)
        return out


def _has_default(cls, name: str) -> bool:
    f = next(f for f in fields(cls) if f.name == name)
    return f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING


def _malformed(where: str, what: str) -> DatasetError:
    return DatasetError(
        f"lineage record {where} {what}; restore meta/recap_label/lineage.json or make a fresh copy with "
        f"`recap-label copy`"
    )


@dataclass
class RunSettings(_Record):
    """The rule and the columns a label run used."""

    lookahead: int
    positive_ratio: float
    tail_bootstrap: str
    threshold_scope: str
    human_col: str
    reward_col: str
    adv_col: str
    extra: dict = field(default_factory=dict)


@dataclass
class LabelRun(_Record):
    kind: ClassVar[str] = "label"

    id: str
    time: str
    settings: RunSettings
    value_source: dict  # the value source's provenance
    values_from: str  # how V was obtained this run (inference, sidecar, …)
    thresholds: dict
    pool_sizes: dict
    counts: dict
    share: float | None
    share_per_task: dict
    transitions: dict
    files_rewritten: list[str]
    # content hash of each rewritten file right after the run: rollback refuses over foreign edits
    file_sha256_after: dict[str, str]
    prior_labels: str  # relative path of the prior labels table (store.paths.prior_labels_file)
    info_json_prior: str | None = None
    demo_labels_sha256: str | None = None
    recovered: str | None = None
    duration_s: float | None = None
    rolled_back: str | None = None  # id of the rollback run that undid this one
    # the value model's inference this run: frames/s, wall-time split, device, precision, step, EMA (None: no inference)
    performance: dict | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_json(cls, data, where):
        run = super().from_json(data, where)
        run.settings = RunSettings.from_json(run.settings, f"{where} settings")
        return run


def checkpoint_step(value_source: dict) -> int | None:
    """The training step of a model value source (its step_XXXXXXXX folder), else None."""
    m = re.search(r"step_0*(\d+)", str(value_source.get("checkpoint") or ""))
    return int(m.group(1)) if m else None


@dataclass
class RollbackRun(_Record):
    kind: ClassVar[str] = "rollback"

    id: str
    time: str
    undid: list[str]
    files_restored: list[str]
    file_sha256_after: dict[str, str] = field(default_factory=dict)
    recovered: str | None = None
    extra: dict = field(default_factory=dict)


Run = LabelRun | RollbackRun
_RUN_KINDS = {"label": LabelRun, "rollback": RollbackRun}


@dataclass
class SourceRecord(_Record):
    """The dataset a copy was made from, as it was at copy time."""

    given: str
    path: str
    realpath: str
    codebase_version: str
    fingerprint: dict[
        str, dict
    ]  # relative path → {size, mtime_ns, sha256} of every copied file (older records: data and info.json, no mtime_ns)
    label_column: str
    label_column_sha256: str | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class OriginalRecord(_Record):
    """The original dataset a line of iteration copies started from: its folder name names the
    line (`local/<name>_vlm_label_active`, the default copy names), its real path identifies it."""

    name: str
    realpath: str
    extra: dict = field(default_factory=dict)


@dataclass
class Lineage(_Record):
    iteration: int
    parent: str | None
    source: SourceRecord | None
    created: str | None = None
    tool_version: str | None = None
    copy: dict = field(default_factory=dict)
    runs: list[Run] = field(default_factory=list)
    retired: str | None = None
    original: OriginalRecord | None = None  # None in records before format 3, and on an original labeled in place
    tool: str = "recap-label"
    format: int = FORMAT
    extra: dict = field(default_factory=dict)

    _optional: ClassVar[frozenset[str]] = frozenset({"source", "parent"})

    @classmethod
    def new_copy(
        cls, iteration: int, parent: str | None, source: SourceRecord, copy_stats: dict, original: OriginalRecord
    ) -> "Lineage":
        return cls(
            iteration, parent, source, created=now_iso(), tool_version=__version__, copy=copy_stats, original=original
        )

    @classmethod
    def for_original(cls) -> "Lineage":
        """The record started on a dataset labeled in place (`--allow-original`)."""
        return cls(0, None, None, created=now_iso(), tool_version=__version__)

    @classmethod
    def from_json(cls, data, where):
        if isinstance(data, dict) and data.get("format", 1) not in READABLE_FORMATS:
            raise DatasetError(
                f"lineage record {where} has format {data.get('format')!r}, which this recap-label ({__version__}) "
                f"cannot read; upgrade recap-label"
            )
        record = super().from_json(data, where)
        if not isinstance(record.iteration, int) or not isinstance(record.runs, list):
            raise _malformed(where, "has a wrong 'iteration' or 'runs'")
        if record.source is not None:
            record.source = SourceRecord.from_json(record.source, f"{where} source")
        if record.original is not None:
            record.original = OriginalRecord.from_json(record.original, f"{where} original")
        runs = []
        for i, run in enumerate(record.runs):
            kind = run.get("kind") if isinstance(run, dict) else None
            if kind not in _RUN_KINDS:
                raise _malformed(where, f"run {i + 1} has an unknown kind {kind!r}")
            runs.append(_RUN_KINDS[kind].from_json(run, f"{where} run {i + 1}"))
        record.runs = runs
        record.format = FORMAT  # written back in the current shape
        return record

    def to_json(self) -> dict:
        out = super().to_json()
        out["runs"] = [r.to_json() for r in self.runs]
        return out

    # -- the run history ---------------------------------------------------------------------

    def next_run_id(self) -> str:
        return f"run-{len(self.runs) + 1:04d}"

    def run(self, run_id: str) -> Run | None:
        return next((r for r in self.runs if r.id == run_id), None)

    def active_label_runs(self) -> list[LabelRun]:
        """Label runs whose labels are on disk (not rolled back), oldest first."""
        return [r for r in self.runs if isinstance(r, LabelRun) and not r.rolled_back]

    def active_label_run(self) -> LabelRun | None:
        active = self.active_label_runs()
        return active[-1] if active else None

    def last_written_hashes(self) -> dict[str, tuple[str, str]]:
        """For each data file recap-label rewrote: (the run that wrote it last, its sha256 then)."""
        out: dict[str, tuple[str, str]] = {}
        for run in self.runs:
            for rel, digest in run.file_sha256_after.items():
                out[rel] = (run.id, digest)
        return out

    def with_run(self, run: Run) -> "Lineage":
        """A copy with `run` appended; a rollback also marks the runs it undid."""
        runs = list(self.runs)
        if isinstance(run, RollbackRun):
            runs = [_rolled_back(r, run.id) if r.id in run.undid else r for r in runs]
        return _replace(self, runs=[*runs, run])

    def retired_now(self) -> "Lineage":
        return _replace(self, retired=now_iso())

    def unretired(self) -> "Lineage":
        return _replace(self, retired=None)


def _rolled_back(run: Run, by: str) -> Run:
    return _replace(run, rolled_back=by)


def _replace(record, **changes):
    return dataclasses.replace(record, **changes)


# -- the file ----------------------------------------------------------------------------------


def lineage_path(root: Path) -> Path:
    return root / LINEAGE_FILE


def read_lineage(root: Path) -> Lineage | None:
    path = lineage_path(root)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(
            f"lineage record {path} is malformed ({exc}); restore it or make a fresh copy with `recap-label copy`"
        ) from None
    return Lineage.from_json(data, str(path))


def lineage_bytes(record: Lineage) -> bytes:
    """The file's content, for staging it in a commit beside the data files."""
    return (json.dumps(record.to_json(), indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def write_lineage(root: Path, record: Lineage) -> None:
    (root / STATE_DIR).mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(lineage_path(root), lineage_bytes(record))
