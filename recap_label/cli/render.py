"""Everything the commands print for a human (rich tables and plain lines): one function per result.

Only drawing; the numbers and the domain facts (which run is active, which iteration retired)
come from the library's result objects. Under --json cli/output.py prints their `to_json()`
instead. rich, numpy and the library are imported only when something is drawn: `--help` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING


if TYPE_CHECKING:
    from recap_label.summary import Breakdown


def console():
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)  # plain lines never broken: a path stays one piece


def breakdown_table(b: Breakdown, title: str = "adv_ind breakdown"):
    from rich.table import Table

    from recap_label.summary import LABELS

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
        t.add_row(
            str(r.episode_index),
            r.kind,
            str(r.frames),
            str(r.intervention),
            str(r.positive),
            str(r.negative),
            str(r.none),
        )
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
    t.add_row(
        "V std per episode (min / median / max)",
        " / ".join(f"{v.episode_std[k]:.4f}" for k in ("min", "median", "max")),
    )
    t.add_row(f"Spearman(V, {v.mc_column})", num(v.spearman_mc))
    t.add_row(
        f"AUC success vs failure (mean V, last {v.tail_frames} frames)",
        num(v.auc_success) + f"  ({v.successes} ok, {v.failures} failed)",
    )
    t.add_row(
        "saturated at first / last bin", f"{100 * v.saturated_first_bin:.1f} % / {100 * v.saturated_last_bin:.1f} %"
    )
    t.add_row("ties at the threshold", f"{v.ties_at_threshold:,}")
    t.add_row(f"autonomous positives in the last {v.tail_frames} frames", f"{v.tail_positives:,} of {v.positives:,}")
    return t


def diff_tables(d, top: int | None):
    """`diff`: the confusion matrices by intervention, agreement and kappa, the most flipped
    episodes and tasks, V agreement, threshold shift and the settings that differ."""
    from rich.table import Table

    from recap_label.summary import LABELS as CLASSES  # the diff's classes: positive, negative, none

    def num(x, fmt="{:.3f}"):
        return "n/a" if x is None else fmt.format(x)

    tables = []
    t = Table(
        title=f"labels: A = {d.a} (rows) vs B = {d.b} (columns), {d.frames:,} rollout frames", title_justify="left"
    )
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
            t.add_row(
                f"{shown} ({agr.frames:,})" if first else "",
                c,
                *(f"{n:,}" for n in agr.confusion[i]),
                num(agr.agreement, "{:.1%}") if first else "",
                num(agr.kappa) if first else "",
            )
    tables.append(t)
    for title, rows, limit in (("episodes that flipped most", d.episodes, top), ("tasks", d.tasks, None)):
        t = Table(title=title, title_justify="left")
        for col in (
            "episode" if title.startswith("episodes") else "task",
            "frames",
            "flipped",
            "→ positive",
            "→ negative",
        ):
            t.add_column(col, justify="left" if col == "task" else "right")
        for r in rows[:limit]:
            t.add_row(
                str(r.id),
                f"{r.frames:,}",
                f"{r.flipped:,} ({r.flipped / max(r.frames, 1):.0%})",
                f"{r.to_positive:,}",
                f"{r.to_negative:,}",
            )
        tables.append(t)
    if d.values is not None:
        t = Table(title="V of A vs V of B", title_justify="left")
        t.add_column("measure")
        t.add_column("value", justify="right")
        t.add_row("Pearson / Spearman", f"{num(d.values['pearson'])} / {num(d.values['spearman'])}")
        t.add_row(
            "|ΔV| mean / max", f"{num(d.values['mean_abs_dv'], '{:.4f}')} / {num(d.values['max_abs_dv'], '{:.4f}')}"
        )
        t.add_row("frames with V on both sides", f"{d.values.get('frames', 0):,}")
        tables.append(t)
    t = Table(title="thresholds and settings that differ", title_justify="left")
    t.add_column("", no_wrap=True)
    # a checkpoint path or hash folds onto more lines instead of being cut
    t.add_column("A", justify="right", overflow="fold")
    t.add_column("B", justify="right", overflow="fold")
    for name, th in d.thresholds.items():
        t.add_row(
            f"threshold {name}",
            num(th["a"], "{:.5g}"),
            num(th["b"], "{:.5g}") + (f" ({th['shift']:+.4g})" if th["shift"] is not None else ""),
        )
    for k, (va, vb) in d.settings.items():
        t.add_row(k, as_written(va, k), as_written(vb, k))
    tables.append(t)
    return tables


def as_written(value, key: str = "") -> str:
    """A setting as a person writes it: true / false, (none), 0.3, `slot: column` one per line;
    a content hash by its first 12 digits (whole in --json)."""
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):
        return "\n".join(f"{k}: {as_written(v)}" for k, v in value.items()) or "(none)"
    if isinstance(value, (list, tuple)):
        return ", ".join(as_written(v) for v in value) or "(none)"
    text = str(value)
    if key.endswith("sha256") and len(text) > 12:
        return text[:12] + "…"
    return text


# -- one function per command's result ----------------------------------------------------------


def configuration(settings) -> None:
    """`config`: a table of key, value, source; one TOML-style line per key when a table would cut paths."""
    import json

    from rich.table import Table

    out, rows = console(), settings.as_rows()
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    if sum(widths) + 10 > out.width:
        out.print("recap-label configuration (key = value  # source)")
        for key, text, source in rows:
            value = settings.effective(key)
            if value is None or isinstance(value, dict):  # TOML has no null: a comment says what applies
                out.print(f"# {key}: {text}  # {source}")
            else:
                out.print(f"{key} = {json.dumps(value)}  # {source}")
        return
    t = Table(title="recap-label configuration", title_justify="left")
    for col in ("key", "value", "source"):
        t.add_column(col, no_wrap=True)
    for row in rows:
        t.add_row(*row)
    out.print(t)


def copied(result) -> None:
    out = console()
    for note in result.notes:
        out.print(f"note: {note}")
    out.print(
        f"copied {result.files} files ({result.bytes / 1e6:,.1f} MB) → {result.dest}  (iteration {result.iteration})"
    )
    out.print("verified: no symlinks, every file byte-identical to its source")
    if result.registered:
        out.print(f"registered: {result.registered} → {result.dest}  (repo_id local/{result.dest.name})")
    out.print(counts_side_by_side("source", result.source_counts, "copy", result.copy_counts))


_PROGRESS_MIN_BYTES = 256 << 20


class ByteProgress:
    """`copy`'s rich bar on bytes for large copies on a terminal; silent otherwise (and when told,
    under --json). close() removes it."""

    def __init__(self, silent: bool = False):
        self.silent = silent
        self.progress = None

    def __call__(self, total: int, files: int):
        from rich.console import Console

        err = Console(stderr=True)
        if self.silent or total < _PROGRESS_MIN_BYTES or not err.is_terminal:
            return lambda n: None
        from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

        self.progress = Progress(
            "copy",
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=err,
            transient=True,
        )
        task = self.progress.add_task("copy", total=total)
        self.progress.start()
        return lambda n: self.progress.update(task, advance=n)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def verified(report, episodes: bool) -> None:
    from rich.table import Table

    out = console()
    out.print(f"dataset {report.dataset}")
    for note in report.notes:
        out.print(f"note: {note}")
    out.print(breakdown_table(report.breakdown))
    out.print(summary_line(report.breakdown))
    if episodes:
        out.print(episodes_table(report.breakdown))
    _value_model(out, report.value_model)
    t = Table(title="invariants", title_justify="left")
    t.add_column("check")
    t.add_column("result")
    t.add_column("detail", overflow="fold")  # a long path is folded onto the next line, never cut with "…"
    for c in report.checks:
        t.add_row(c.name, {"pass": "PASS", "fail": "FAIL", "skip": "skip", "warn": "WARN"}[c.status], c.detail)
    out.print(t)
    warned = sum(c.status == "warn" for c in report.checks)
    out.print(
        ("all invariants hold" + (f" ({warned} warning{'s' if warned > 1 else ''})" if warned else ""))
        if report.ok
        else "INVARIANT FAILED"
    )


def _value_model(out, section) -> None:
    if section is None:
        return
    out.print(value_model_table(section))
    for note in section.notes:
        out.print(f"note: {note}")
    for w in section.warnings:
        out.print(f"warning: value model: {w}")


def scored(s) -> None:
    """`label --score-only`."""
    out = console()
    who = "scored" if s.shard is None else f"shard {s.shard[0]}/{s.shard[1]}: scored"
    out.print(
        f"{who} {s.inferred} of {s.episodes} episode(s) ({s.frames:,} frames; {s.reused} already done) in "
        f"{s.seconds:.1f} s"
    )
    out.print(f"value parts: {s.parts}")
    if s.dropped:
        out.print(f"note: {len(s.dropped)} damaged part(s) scored again (episodes {', '.join(map(str, s.dropped))})")
    if s.missing_shards:
        out.print(f"shards still to finish: {', '.join(map(str, s.missing_shards))}")
    elif s.shard is not None:
        out.print("every shard is done: run `recap-label label` without --shard to write the labels")


def labeled(o) -> None:
    from rich.table import Table

    out = console()
    for note in o.notes:
        out.print(f"note: {note}")
    head = (
        f"DRY RUN — nothing written ({o.files_rewritten} data file(s) would be rewritten)"
        if o.dry_run
        else f"{o.run_id}: {o.files_rewritten} data file(s) rewritten"
    )
    out.print(f"{head} · {o.dataset}")
    out.print(f"values from: {o.values_from}")
    for name, thr in o.thresholds.items():
        shown = "n/a (no autonomous frames)" if thr is None else f"{thr:.6g}"
        out.print(f"threshold ({name}, {o.pool_sizes[name]:,} autonomous frames): {shown}")
    out.print(breakdown_table(o.breakdown, title="adv_ind after labeling" if not o.dry_run else "adv_ind if labeled"))
    out.print(summary_line(o.breakdown))
    if o.transitions:
        out.print("label transitions (rollout frames)")  # a line of its own: a narrow table's title would wrap
        t = Table()
        t.add_column("from -> to")
        t.add_column("frames", justify="right")
        for k, v in o.transitions.items():
            t.add_row(k, f"{v:,}")
        out.print(t)
    else:
        out.print("no label changes")
    if len(o.share_per_task) > 1:
        out.print(
            "positive share per task: "
            + ", ".join(
                f"{o.task_names.get(k, f'task {k}')}: {100 * v:.1f} %"
                for k, v in o.share_per_task.items()
                if v is not None
            )
        )
    for w in o.warnings:
        out.print(f"warning: {w}")
    _value_model(out, o.value_model)
    p = o.performance
    if p:
        step = "" if p.get("checkpoint_step") is None else f"step {p['checkpoint_step']}, "
        out.print(
            f"inference: {p['frames']:,} frames at {p['frames_per_s']:,.1f} frames/s on {p.get('device')}, "
            f"{p.get('precision')}"
        )
        out.print(
            f"  batch {p.get('batch_size')}, {p.get('num_workers')} workers · checkpoint "
            f"{step}{'EMA' if p.get('ema') else 'raw params'}"
        )
        parts = {k: v for k, v in p["wall_s"].items() if v is not None and k != "total"}
        split = " · ".join(f"{k.replace('_', ' ')} {v:.2f} s" for k, v in parts.items())
        total = p["wall_s"].get("total", o.timings.get("total", 0))
        out.print(f"time: {split} = total {total:.2f} s")
    else:
        out.print(f"time: {o.timings.get('total', 0):.2f} s")


def retired(res) -> None:
    """`rollback --iteration`."""
    out = console()
    out.print(f"retired {res.dataset}" + (" (deleted)" if res.deleted else " (folder kept)"))
    for name in res.unregistered:
        out.print(f"unregistered {name}")
    for note in res.notes:
        out.print(f"note: {note}")
    if res.active_now:
        out.print(f"active iteration now: {res.active_now}")


def run_history(history) -> None:
    """`rollback --list`: one row per run, its status from the history (commands/rollback.RunHistory)."""
    out = console()
    if not history.runs:
        out.print(f"no runs recorded for {history.dataset}: no label run yet, its labels are those it was copied with")
        return
    from rich.table import Table

    out.print(f"runs of {history.dataset}")
    t = Table(box=None, padding=(0, 1, 0, 0))  # no rules: a whole row fits 80 columns
    t.add_column("run", no_wrap=True)
    t.add_column("time (UTC)", no_wrap=True)  # a whole timestamp, never cut
    t.add_column("kind", no_wrap=True)
    for col in ("ratio", "N", "share"):  # the rule's positive ratio and lookahead, the share it gave
        t.add_column(col, no_wrap=True, justify="right")
    t.add_column("status", overflow="fold")
    for r in history.runs:
        if r.kind == "rollback":
            t.add_row(r.id, _utc(r.time), r.kind, "", "", "", history.status(r))
        else:
            share = "" if r.share is None else f"{100 * r.share:.2f} %"
            ratio, n = f"{r.settings.positive_ratio:g}", str(r.settings.lookahead)
            t.add_row(r.id, _utc(r.time), r.kind, ratio, n, share, history.status(r))
    out.print(t)
    for r in history.runs:  # the value source of each label run, whole, on a line of its own
        if r.kind == "label":
            out.print(f"{r.id} values: {value_source_text(r.value_source)}")


def value_source_text(source: dict) -> str:
    """A value source's provenance as a person names it: the checkpoint step, the file, the column."""
    kind = source.get("source", "?")
    if kind == "model":
        return f"model {source.get('checkpoint')}" + (" (EMA)" if source.get("ema") else "")
    if kind == "values-file":
        column = f", column {source['column']}" if source.get("column") else ""
        return f"values file {source.get('path')}{column}"
    if kind == "value-column":
        return f"value column {source.get('column')}"
    return str(kind)


def rolled_back(res) -> None:
    out = console()
    for note in res.notes:
        out.print(f"note: {note}")
    out.print(f"rolled back {', '.join(res.undone)}: {res.files_restored} data file(s) restored to their prior labels")


def iterations(its, given: str) -> None:
    """`iterations`; `given` is the dataset argument, for the hint when there is no copy yet."""
    out = console()
    if not its.rows:  # a sentence, not an empty table
        out.print(f"{its.base} has no iteration copies yet; `recap-label copy {given}` makes the first")
        return
    from rich.table import Table

    out.print(f"iterations of {its.base}")
    t = Table(box=None, padding=(0, 1, 0, 0))  # no rules: a row fits 80 columns; a long name folds, numbers never do
    for col in ("", "name", "it", "parent", "runs", "share", "threshold", "step", "state"):
        t.add_column(
            col,
            justify="right" if col in ("it", "runs", "share", "threshold", "step") else "left",
            no_wrap=col != "name",
            overflow="fold" if col == "name" else "ellipsis",
        )
    for r in its.rows:
        # the parent's iteration from its own record ("-": copied from the original; its name when it is gone)
        parent = "-" if r.parent is None else r.parent if r.parent_iteration is None else f"v{r.parent_iteration}"
        t.add_row(
            "*" if r.active else "",
            r.name,
            "?" if r.iteration is None else f"v{r.iteration}",
            parent,
            str(r.runs),
            "-" if r.share is None else f"{100 * r.share:.1f} %",
            "-" if r.threshold is None else f"{r.threshold:.4g}",
            "-" if r.checkpoint_step is None else str(r.checkpoint_step),
            r.state,
        )
    out.print(t)
    for r in its.rows:
        out.print(f"{r.name}: {r.path}")
    out.print(
        f"* = {its.alias} → {its.active}"
        if its.active
        else f"{its.alias} is not set (no live labeled iteration is active; `recap-label activate <copy>` sets it)"
    )


def activated(a) -> None:
    out = console()
    for note in a.notes:
        out.print(f"note: {note}")
    out.print(f"local/{a.alias.name} → {a.target}")


def caches(report) -> None:
    """`cache`: one line per entry (the path whole), then the total."""
    out = console()
    verb = "removed" if report.cleared else "kept"
    if not report.entries:
        out.print(f"nothing {verb}: no cached dry-run values or converted models in {report.folder}")
        return
    names = {"dry-run": "dry-run values", "models": "converted model"}
    for e in report.entries:
        out.print(f"{names.get(e.kind, e.kind)} · {_mb(e.bytes)} · {e.what}: {e.path}")
    n = len(report.entries)
    out.print(f"{verb}: {n} entr{'y' if n == 1 else 'ies'}, {_mb(report.total_bytes)} in {report.folder}")
    if not report.cleared:
        out.print("`recap-label cache --clear` removes them (only caches: a later run infers or converts again)")


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.1f} kB"


def unretired(res) -> None:
    out = console()
    for note in res.notes:
        out.print(f"note: {note}")
    if res.was_retired:
        out.print(
            f"{res.dataset.name} is back in the loop (retired {res.was_retired}): registered as local/{res.entry.name}"
        )
    else:
        out.print(f"{res.dataset.name} is live: registered as local/{res.entry.name}")
    if res.active:
        out.print(f"_active → {res.active}")


def registered(res) -> None:
    out = console()
    out.print(
        f"registered: {res.entry} → {res.dest}"
        + (f"  (was {res.before})" if res.before and res.before != str(res.dest) else "")
    )
    if res.alias_moved:
        out.print(f"the _active alias followed it to {res.dest}")


def diff(report, top: int | None) -> None:
    out = console()
    out.print(f"A = {report.a_path} ({report.a})")
    out.print(f"B = {report.b_path} ({report.b})")
    for t in diff_tables(report, top):
        out.print(t)
    for note in report.notes:
        out.print(f"note: {note}")


def _utc(stamp: str) -> str:
    """2026-12-01T10:04:05+00:00 -> 2026-12-01 10:04:05 (19 columns)."""
    from datetime import datetime, timezone

    try:
        return datetime.fromisoformat(stamp).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError):
        return str(stamp)


def viewed(res) -> None:
    out = console()
    for e in res.episodes:
        out.print(
            f"episode {e['episode']}: {e['frames']} frames" + (f" (picked: {e['reason']})" if e["reason"] else "")
        )
    for w in res.written:
        out.print(f"wrote {w['path']} ({w['frames']} frames)")
    for note in res.notes:
        out.print(f"note: {note}")
    if res.url:
        out.print(f"Rerun web viewer: {res.url}  (Ctrl-C stops serving)")
    out.file.flush()
