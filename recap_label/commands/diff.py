"""`diff A B`: iteration N against N-1 (two iteration copies of one base), or two label runs of
one copy (`DS@run-0001`). Only reads both datasets.

Frames are matched on (episode_index, frame_index) over the rollout episodes. Reported by
intervention (0/1) and overall: the 3x3 confusion matrix of labels (positive/negative/none),
the agreement share and Cohen's kappa; the episodes and tasks that flipped most; where both
sides have V (values sidecar), Pearson and Spearman correlation, mean and max |dV| and the
threshold shift; and the run settings that differ.

Each side is read by recap_label.run_labels (which `view --compare` shares).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recap_label.config import Settings
from recap_label.errors import BadInput
from recap_label.run_labels import CLASSES, Side, check_same_base, load_side
from recap_label.stats import cohen_kappa, confusion, pearson, spearman
from recap_label.store.fsutil import write_file_atomic
from recap_label.store.lineage import LabelRun, checkpoint_step


@dataclass
class Agreement:
    frames: int
    confusion: list[list[int]]  # rows: A's label, columns: B's label, in CLASSES order
    agreement: float | None
    kappa: float | None


@dataclass
class Flips:
    id: int | str
    frames: int
    flipped: int
    to_positive: int
    to_negative: int


@dataclass
class DiffReport:
    a: str
    b: str
    a_path: Path
    b_path: Path
    frames: int
    by_intervention: dict[str, Agreement]  # "all", "intervention=0", "intervention=1"
    episodes: list[Flips]
    tasks: list[Flips]
    values: dict | None
    thresholds: dict
    settings: dict[str, list]  # name -> [A's, B's], only those that differ
    notes: list[str] = field(default_factory=list)
    a_side: Side | None = None
    b_side: Side | None = None

    def to_json(self, top: int | None) -> dict:
        from dataclasses import asdict

        return {
            "a": self.a,
            "b": self.b,
            "a_path": str(self.a_path),
            "b_path": str(self.b_path),
            "frames": self.frames,
            "classes": list(CLASSES),
            "by_intervention": {k: asdict(v) for k, v in self.by_intervention.items()},
            "episodes": [asdict(f) for f in self.episodes[:top]],
            "tasks": [asdict(f) for f in self.tasks],
            "values": self.values,
            "thresholds": self.thresholds,
            "settings": self.settings,
            "notes": self.notes,
        }


def _agreement(a: np.ndarray, b: np.ndarray) -> Agreement:
    m = confusion(a, b, CLASSES)
    n = int(m.sum())
    return Agreement(n, m.tolist(), None if n == 0 else float(np.trace(m) / n), cohen_kappa(m))


def _flips(ids: np.ndarray, a: np.ndarray, b: np.ndarray, names=None) -> list[Flips]:
    """Per group id: frames, flipped frames and their direction; most flipped first."""
    uniq, inverse = np.unique(ids, return_inverse=True)
    changed = a != b
    frames = np.bincount(inverse, minlength=uniq.size)
    flipped = np.bincount(inverse, weights=changed, minlength=uniq.size).astype(int)
    to_pos = np.bincount(inverse, weights=changed & (b == "positive"), minlength=uniq.size).astype(int)
    to_neg = np.bincount(inverse, weights=changed & (b == "negative"), minlength=uniq.size).astype(int)
    rows = [
        Flips(names(int(u)) if names else int(u), int(f), int(x), int(p), int(n))
        for u, f, x, p, n in zip(uniq, frames, flipped, to_pos, to_neg)
    ]
    rows.sort(key=lambda r: (-r.flipped, str(r.id)))
    return rows


_SETTINGS = ("lookahead", "positive_ratio", "threshold_scope", "tail_bootstrap")
_PROVENANCE = (
    "source",
    "checkpoint",
    "checkpoint_sha256",
    "ema",
    "tokenizer_sha256",
    "precision",
    "cameras",
    "column",
    "path",
    "sha256",
)


def settings_of_run(run: LabelRun) -> dict:
    out = {k: getattr(run.settings, k) for k in _SETTINGS}
    out.update({k: run.value_source.get(k) for k in _PROVENANCE if k in run.value_source})
    out["checkpoint_step"] = checkpoint_step(run.value_source)
    return out


def diff_datasets(
    a_arg: str, b_arg: str, settings: Settings, *, common: bool = False, force: bool = False
) -> DiffReport:
    a, b = load_side(a_arg, settings), load_side(b_arg, settings)
    check_same_base(a, b, a_arg, b_arg, force)
    notes = a.notes + b.notes
    ea, eb = set(np.unique(a.episode).tolist()), set(np.unique(b.episode).tolist())
    if ea != eb:
        only_a, only_b = sorted(ea - eb), sorted(eb - ea)
        if not common:
            parts = [
                f"{len(only_a)} only in A (e.g. {only_a[0]})" if only_a else "",
                f"{len(only_b)} only in B (e.g. {only_b[0]})" if only_b else "",
            ]
            raise BadInput(
                f"the rollout episodes differ: {', '.join(p for p in parts if p)}; pass --common to compare the "
                f"episodes both have"
            )
        notes.append(
            f"compared the {len(ea & eb)} rollout episodes both have ({len(only_a)} only in A, {len(only_b)} only in "
            f"B left out)"
        )
    ia, ib = _match(a.key, b.key)
    if not common and ia.size != a.key.size:
        raise BadInput(
            f"the frames of the rollout episodes differ ({a.key.size:,} in A, {b.key.size:,} in B, {ia.size:,} in "
            f"both); pass --common to compare the frames both have"
        )
    la, lb = a.labels[ia], b.labels[ib]
    human = a.human[ia]
    if np.any(human != b.human[ib]):
        notes.append(
            f"intervention differs on {int(np.count_nonzero(human != b.human[ib])):,} frames; A's is used to split"
        )
    groups = {
        "all": _agreement(la, lb),
        "intervention=0": _agreement(la[~human], lb[~human]),
        "intervention=1": _agreement(la[human], lb[human]),
    }
    names = lambda t: a.tasks.get(t, str(t))  # noqa: E731
    values = None
    if a.value is not None and b.value is not None:
        va, vb = a.value[ia], b.value[ib]
        both = np.isfinite(va) & np.isfinite(vb)  # `label --infer needed` leaves some frames without V
        va, vb = va[both], vb[both]
        dv = np.abs(vb - va)
        values = {
            "pearson": pearson(va, vb),
            "spearman": spearman(va, vb),
            "mean_abs_dv": float(dv.mean()) if dv.size else None,
            "max_abs_dv": float(dv.max()) if dv.size else None,
            "frames": int(both.sum()),  # the frames both sides have V for
        }
    thresholds = {}
    for name in sorted(set(a.run.thresholds) | set(b.run.thresholds)):
        ta, tb = a.run.thresholds.get(name), b.run.thresholds.get(name)
        thresholds[name] = {"a": ta, "b": tb, "shift": None if ta is None or tb is None else tb - ta}
    sa, sb = settings_of_run(a.run), settings_of_run(b.run)
    differ = {k: [sa.get(k), sb.get(k)] for k in dict.fromkeys([*sa, *sb]) if sa.get(k) != sb.get(k)}
    return DiffReport(
        a.title,
        b.title,
        a.root,
        b.root,
        int(ia.size),
        groups,
        _flips(a.episode[ia], la, lb),
        _flips(a.task[ia], la, lb, names),
        values,
        thresholds,
        differ,
        notes,
        a,
        b,
    )


def _match(ka: np.ndarray, kb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions in A and in B of the keys both have (both sorted, unique)."""
    _, ia, ib = np.intersect1d(ka, kb, assume_unique=True, return_indices=True)
    return ia, ib


def plot_diff(report: DiffReport, out: Path, episodes_shown: int = 4) -> Path:
    """V of A and B over time for the most-changed episodes, the label bands under them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a, b = report.a_side, report.b_side
    shown = [f.id for f in report.episodes if f.flipped][:episodes_shown] or [
        f.id for f in report.episodes[:episodes_shown]
    ]
    fig, axes = plt.subplots(len(shown), 1, figsize=(10, 2.6 * len(shown)), constrained_layout=True, squeeze=False)
    band = {"positive": "#55a868", "negative": "#c44e52", "none": "#bbbbbb"}
    for ax, ep in zip(axes[:, 0], shown):
        for side, color, y in ((a, "#4c72b0", -1.12), (b, "#dd8452", -1.22)):
            sel = side.episode == ep
            frames = side.frame[sel]
            if side.value is not None:
                ax.plot(frames, side.value[sel], color=color, linewidth=1.2, label=f"V {side.title}")
            for lab, c in band.items():
                m = side.labels[sel] == lab
                ax.scatter(frames[m], np.full(m.sum(), y), marker="|", s=60, color=c, linewidths=1)
            ax.text(frames.max() + 1 if frames.size else 0, y, side.title, fontsize=7, va="center")
        ax.set_ylim(-1.3, 0.05)
        ax.set_title(f"episode {ep}: label bands (green positive, red negative) of A (upper) and B (lower)", fontsize=9)
        ax.set_xlabel("frame index")
        ax.set_ylabel("V")
        if a.value is not None or b.value is not None:
            ax.legend(fontsize=7, loc="upper left")
    out = Path(out)
    write_file_atomic(
        out, lambda tmp: fig.savefig(tmp, format="png", dpi=100)
    )  # never half a PNG under the name asked for
    plt.close(fig)
    return out
