"""`verify --plot`: the advantage histogram with its threshold, and V over time for a few
episodes with intervention spans shaded — what a person looks at to judge the value model."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recap_label.errors import BadInput
from recap_label.lerobot.columns import human_mask, scalar_column
from recap_label.lerobot.dataset import LeRobotDataset
from recap_label.store.lineage import LabelRun
from recap_label.values.sidecar import read_sidecar


def plot_labels(ds: LeRobotDataset, human_col: str, run: LabelRun | None, out: Path, episodes_shown: int = 4) -> Path:
    sidecar = read_sidecar(ds.root)
    if sidecar is None:
        raise BadInput(f"{ds.root} has no values sidecar (meta/recap_label/values.parquet); run `recap-label label` first, then plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _, side = sidecar
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
    shown = np.unique(s_ep)[:episodes_shown]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, ep in enumerate(shown):
        sel = s_ep == ep
        frames, v, h = s_fr[sel], value[sel], human[sel]
        o = np.argsort(frames)
        frames, v, h = frames[o], v[o], h[o]
        color = colors[i % len(colors)]
        ax.plot(frames, v, color=color, linewidth=1.2, label=f"episode {int(ep)}")
        edges = np.flatnonzero(np.diff(np.r_[0, h.astype(int), 0]))
        for start, stop in zip(edges[::2], edges[1::2]):
            ax.axvspan(frames[start], frames[stop - 1] + 1, color=color, alpha=0.12)
    ax.set_xlabel("frame index (shaded: intervention spans)")
    ax.set_ylabel("V (value model)")
    ax.set_ylim(-1.05, 0.05)
    ax.set_title("V over time")
    ax.legend(fontsize=8, ncol=2)
    out = Path(out)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
