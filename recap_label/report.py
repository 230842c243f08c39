"""Tables for the terminal (rich): the label breakdown, per-episode rows, side-by-side counts.

Only drawing; the numbers come from summary.py and the commands. The CLI prints `to_json()`
of the same objects instead when --json is given.
"""

from __future__ import annotations

from recap_label.summary import LABELS, Breakdown


def breakdown_table(b: Breakdown, title: str = "adv_ind breakdown"):
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    t.add_column("frames")
    for name in LABELS:
        t.add_column(name, justify="right")
    t.add_column("total", justify="right")
    for label, counts in (("all", b.labels), ("intervention=1", b.intervention), ("intervention=0", b.autonomous)):
        t.add_row(label, *(f"{counts.get(n, 0):,}" for n in LABELS), f"{sum(counts.values()):,}")
    return t


def summary_line(b: Breakdown) -> str:
    share = "n/a" if b.autonomous_positive_share is None else f"{100 * b.autonomous_positive_share:.2f} %"
    return f"autonomous positive share {share} · episodes: {b.rollout_episodes} rollout, {b.demo_episodes} demo"


def episodes_table(b: Breakdown):
    from rich.table import Table

    t = Table(title="per episode", title_justify="left")
    for col in ("episode", "kind", "frames", "intervention", "positive", "negative", "none"):
        t.add_column(col, justify="right" if col not in ("kind",) else "left")
    for r in b.episodes:
        t.add_row(str(r.episode_index), r.kind, str(r.frames), str(r.intervention), str(r.positive), str(r.negative), str(r.none))
    return t


def counts_side_by_side(left_name: str, left: dict | None, right_name: str, right: dict | None):
    from rich.table import Table

    t = Table(title="adv_ind distribution", title_justify="left")
    t.add_column("value")
    t.add_column(left_name, justify="right")
    t.add_column(right_name, justify="right")
    keys = sorted(set(left or {}) | set(right or {}))
    for k in keys:
        t.add_row(k, f"{(left or {}).get(k, 0):,}", f"{(right or {}).get(k, 0):,}")
    if not keys:
        t.add_row("(no adv_ind column)", "-", "-")
    return t
