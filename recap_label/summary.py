"""The label breakdown (what the pasted pyarrow snippet used to print): label counts overall,
by intervention and per episode, computed from column arrays. cli/render.py draws it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from recap_label.lerobot.columns import EpisodeKinds, episode_kinds

LABELS = ("positive", "negative", "none")


def _label_counts(labels: np.ndarray) -> dict[str, int]:
    counts = {name: int(np.count_nonzero(labels == name)) for name in LABELS}
    other = int(labels.size - sum(counts.values()))
    if other:
        counts["other"] = other
    return counts


@dataclass
class EpisodeRow:
    episode_index: int
    kind: str  # "demo" | "rollout"
    frames: int
    intervention: int
    positive: int
    negative: int
    none: int


@dataclass
class Breakdown:
    frames: int
    labels: dict[str, int]
    intervention: dict[str, int]  # intervention = 1 frames
    autonomous: dict[str, int]  # intervention = 0 frames (they exist only in rollout episodes)
    autonomous_positive_share: float | None
    demo_episodes: int
    rollout_episodes: int
    episodes: list[EpisodeRow] = field(default_factory=list)

    def to_json(self, with_episodes: bool = False) -> dict:
        d = asdict(self)
        if not with_episodes:
            d.pop("episodes")
        return d


def breakdown(
    episode: np.ndarray,
    human: np.ndarray,
    labels: np.ndarray,
    with_episodes: bool = False,
    kinds: EpisodeKinds | None = None,
) -> Breakdown:
    kinds = episode_kinds(episode, human) if kinds is None else kinds
    ids, inverse, is_rollout = kinds.ids, kinds.inverse, kinds.rollout
    auto = ~human
    auto_counts = _label_counts(labels[auto])
    pos, neg = auto_counts["positive"], auto_counts["negative"]
    rows = []
    if with_episodes:
        for k, ep in enumerate(ids):
            sel = inverse == k
            c = _label_counts(labels[sel])
            rows.append(
                EpisodeRow(
                    int(ep),
                    "rollout" if is_rollout[k] else "demo",
                    int(sel.sum()),
                    int(human[sel].sum()),
                    c["positive"],
                    c["negative"],
                    c["none"],
                )
            )
    return Breakdown(
        frames=int(labels.size),
        labels=_label_counts(labels),
        intervention=_label_counts(labels[human]),
        autonomous=auto_counts,
        autonomous_positive_share=(pos / (pos + neg)) if (pos + neg) else None,
        demo_episodes=int((~is_rollout).sum()),
        rollout_episodes=int(is_rollout.sum()),
        episodes=rows,
    )
