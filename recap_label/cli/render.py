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


def value_model_table(v):
    """The value-model section (value_check.ValueModelSection): is V any good?"""
    from rich.table import Table

    def num(x, fmt="{:.3f}"):
        return "n/a" if x is None else fmt.format(x)

    t = Table(title="value model", title_justify="left")
    t.add_column("measure")
    t.add_column("value", justify="right")
    t.add_row("frames (rollout episodes)", f"{v.frames:,}")
    t.add_row("V mean / std", f"{v.v_mean:.4f} / {v.v_std:.4f}")
    t.add_row("V std per episode (min / median / max)", " / ".join(f"{v.episode_std[k]:.4f}" for k in ("min", "median", "max")))
    t.add_row(f"Spearman(V, {v.mc_column})", num(v.spearman_mc))
    t.add_row(f"AUC success vs failure (mean V, last {v.tail_frames} frames)", num(v.auc_success) + f"  ({v.successes} ok, {v.failures} failed)")
    t.add_row("saturated at first / last bin", f"{100 * v.saturated_first_bin:.1f} % / {100 * v.saturated_last_bin:.1f} %")
    t.add_row("ties at the threshold", f"{v.ties_at_threshold:,}")
    t.add_row(f"autonomous positives in the last {v.tail_frames} frames", f"{v.tail_positives:,} of {v.positives:,}")
    return t


def diff_tables(d, top: int | None):
    """`diff`: the confusion matrices by intervention, agreement and kappa, the most flipped
    episodes and tasks, V agreement, threshold shift and the settings that differ."""
    from rich.table import Table

    CLASSES = LABELS  # the diff's classes: positive, negative, none

    def num(x, fmt="{:.3f}"):
        return "n/a" if x is None else fmt.format(x)

    tables = []
    t = Table(title=f"labels: A = {d.a} (rows) vs B = {d.b} (columns), {d.frames:,} rollout frames", title_justify="left")
    t.add_column("frames")
    t.add_column("A \\ B")
    for c in CLASSES:
        t.add_column(c, justify="right")
    t.add_column("agree", justify="right")
    t.add_column("kappa", justify="right")
    for group, agr in d.by_intervention.items():
        for i, c in enumerate(CLASSES):
            first = i == 0
            shown = group.replace("intervention", "interv")  # 80 columns
            t.add_row(f"{shown} ({agr.frames:,})" if first else "", c, *(f"{n:,}" for n in agr.confusion[i]),
                      num(agr.agreement, "{:.1%}") if first else "", num(agr.kappa) if first else "")
    tables.append(t)
    for title, rows, limit in (("episodes that flipped most", d.episodes, top), ("tasks", d.tasks, None)):
        t = Table(title=title, title_justify="left")
        for col in ("episode" if title.startswith("episodes") else "task", "frames", "flipped", "→ positive", "→ negative"):
            t.add_column(col, justify="left" if col == "task" else "right")
        for r in rows[:limit]:
            t.add_row(str(r.id), f"{r.frames:,}", f"{r.flipped:,} ({r.flipped / max(r.frames, 1):.0%})", f"{r.to_positive:,}", f"{r.to_negative:,}")
        tables.append(t)
    if d.values is not None:
        t = Table(title="V of A vs V of B", title_justify="left")
        t.add_column("measure")
        t.add_column("value", justify="right")
        t.add_row("Pearson / Spearman", f"{num(d.values['pearson'])} / {num(d.values['spearman'])}")
        t.add_row("|ΔV| mean / max", f"{num(d.values['mean_abs_dv'], '{:.4f}')} / {num(d.values['max_abs_dv'], '{:.4f}')}")
        tables.append(t)
    t = Table(title="thresholds and settings that differ", title_justify="left")
    t.add_column("", no_wrap=True)
    # a checkpoint path or hash folds onto more lines instead of being cut
    t.add_column("A", justify="right", overflow="fold")
    t.add_column("B", justify="right", overflow="fold")
    for name, th in d.thresholds.items():
        t.add_row(f"threshold {name}", num(th["a"], "{:.5g}"), num(th["b"], "{:.5g}") + (f" ({th['shift']:+.4g})" if th["shift"] is not None else ""))
    for k, (va, vb) in d.settings.items():
        t.add_row(k, str(va), str(vb))
    tables.append(t)
    return tables
