"""`verify --plot`: the advantage histogram with its threshold, and V over time for a few
episodes with intervention spans shaded — what a person looks at to judge the value model."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from recap_label.errors import BadInput
from recap_label.lerobot.columns import human_mask, scalar_column
from recap_label.lerobot.dataset import DatasetFiles
from recap_label.store.fsutil import write_file_atomic
from recap_label.store.lineage import LabelRun
from recap_label.values.cache import read_sidecar


_STYLES = ("-", "--", ":", "-.")
_HATCHES = ("//", "\\\\", "xx", "..")


def value_source_name(provenance: dict) -> str:
    """What V is, for the axis label: the value model, a values file or a dataset column."""
    kind = provenance.get("source")
    if kind == "value-column":
        return f"dataset column {provenance.get('column')}"
    if kind == "values-file":
        return f"values file {Path(str(provenance.get('path'))).name}"
    return "value model"


def check_plot_destination(out: Path) -> None:
    """Before any work: the PNG can be written where asked."""
    out = Path(out)
    if out.is_dir():
        raise BadInput(f"--plot {out} is a folder; pass a file name such as {out / 'labels.png'}")
    parent = out.parent
    if not parent.is_dir():
        raise BadInput(f"--plot {out}: folder {parent} does not exist; create it first or pass another path")
    if not os.access(parent, os.W_OK):
        raise BadInput(f"--plot {out}: folder {parent} is not writable; pass another path")
    if out.suffix.lower() != ".png":
        raise BadInput(f"--plot {out}: the plot is a PNG; pass a file name ending in .png")


def plot_labels(ds: DatasetFiles, human_col: str, run: LabelRun | None, out: Path, episodes_shown: int = 4) -> Path:
    sidecar = read_sidecar(ds.root)
    if sidecar is None:
        raise BadInput(
            f"{ds.root} has no values sidecar (meta/recap_label/values.parquet); run `recap-label label` first, then "
            f"plot"
        )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    provenance, side = sidecar
    table = ds.read_columns(["episode_index", "frame_index", human_col])
    key = table["episode_index"].to_numpy() * (1 << 32) + table["frame_index"].to_numpy()
    human_all = human_mask(scalar_column(table[human_col]), human_col)
    s_ep, s_fr = side["episode_index"].to_numpy(), side["frame_index"].to_numpy()
    order = np.argsort(key)
    pos = order[np.searchsorted(key[order], s_ep * (1 << 32) + s_fr)]
    human = human_all[pos]
    adv = side["advantage"].to_numpy(zero_copy_only=False)
    value = side["value"].to_numpy(zero_copy_only=False)

    fig, axes = plt.subplots(2, 1, figsize=(10, 8), constrained_layout=True)
    ax = axes[0]
    ax.hist(adv[~human], bins=80, color="#4c72b0", alpha=0.85, label="autonomous frames")
    if human.any():
        ax.hist(adv[human], bins=80, color="#dd8452", alpha=0.5, label="intervention frames (always positive)")
    for name, thr in (run.thresholds if run else {}).items():
        if thr is not None:
            ax.axvline(thr, color="black", linestyle="--", linewidth=1.2, label=f"threshold {name} = {thr:.4g}")
    ax.set_xlabel("advantage A_t")
    ax.set_ylabel("frames")
    ratio = run.settings.positive_ratio if run else None
    ax.set_title("N-step advantages of rollout frames" + (f" (positive ratio {ratio})" if ratio else ""))
    ax.legend(fontsize=8)

    ax = axes[1]
    rollouts = np.unique(s_ep)
    shown = (
        rollouts[np.unique(np.linspace(0, rollouts.size - 1, min(episodes_shown, rollouts.size)).round().astype(int))]
        if rollouts.size
        else rollouts
    )
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    positive = (
        np.asarray(side["label"].to_pylist(), dtype=object) == "positive"
        if "label" in side.column_names
        else np.zeros(s_ep.size, bool)
    )
    marked, spans = 0, []
    for i, ep in enumerate(shown):
        sel = s_ep == ep
        frames, v, h, p = s_fr[sel], value[sel], human[sel], positive[sel]
        o = np.argsort(frames)
        frames, v, h, p = frames[o], v[o], h[o], p[o]
        color, style, hatch = colors[i % len(colors)], _STYLES[i % len(_STYLES)], _HATCHES[i % len(_HATCHES)]
        ax.plot(frames, v, color=color, linestyle=style, linewidth=1.2, label=f"episode {int(ep)}")
        ax.plot(frames[p], v[p], linestyle="none", marker="^", markersize=3, color=color, label="_positive")
        marked += int(p.sum())
        edges = np.flatnonzero(np.diff(np.r_[0, h.astype(int), 0]))
        for start, stop in zip(edges[::2], edges[1::2]):
            # each episode's spans get its own hatch, an outline and its number: adjacent spans of
            # different episodes stay apart without colour
            ax.axvspan(
                frames[start],
                frames[stop - 1] + 1,
                facecolor=color,
                alpha=0.15,
                hatch=hatch,
                edgecolor=color,
                linewidth=0.8,
            )
            ax.text(frames[start], 0.02, f"ep {int(ep)}", fontsize=7, color=color, va="top")
            spans.append(f"episode {int(ep)} frames {int(frames[start])}-{int(frames[stop - 1])} hatch {hatch}")
    ax.plot([], [], linestyle="none", marker="^", markersize=4, color="gray", label="positive frames")
    ax.set_xlabel("frame index (hatched: intervention spans, one pattern per episode)")
    ylabel = f"V ({value_source_name(provenance)})"
    ax.set_ylabel(ylabel)
    ax.set_ylim(-1.05, 0.05)
    title = (
        f"V over time: {shown.size} of {rollouts.size} rollout episodes, evenly spaced by episode index "
        f"({', '.join(str(int(e)) for e in shown)})"
    )
    ax.set_title(title)
    ax.legend(fontsize=8, ncol=2)
    out = Path(out)
    # the texts a reader (and a test) can check without looking at pixels
    description = (
        f"y axis: {ylabel}; positive frames marked: {marked}; intervention spans: {'; '.join(spans) or 'none'}"
    )
    # atomic like every other write: a crash never leaves half a PNG under the name asked for
    write_file_atomic(
        out, lambda tmp: fig.savefig(tmp, format="png", dpi=110, metadata={"Title": title, "Description": description})
    )
    plt.close(fig)
    return out
