"""`label` and `rollback` end to end on real files: exact counts, schema-exact write-back, rollback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recap_label.demo import synth
from recap_label.lerobot.dataset import DatasetFiles
from support import (
    SPECIMENS,
    error_line,
    file_state,
    labels_by_file,
    run_sub,
    specimen_id,
    tree_digest,
    values_file,
    writable_copy,
)
from support import lineage_json as read_lineage


def make_copy(cli, tmp_path: Path, spec: synth.DatasetSpec, name: str = "ds") -> Path:
    src = synth.write_dataset(tmp_path / name, spec)
    cli("copy", src, "--json")
    return tmp_path / f"{name}_vlm_label"


def small_spec(version="v2.1", **kw) -> synth.DatasetSpec:
    kw.setdefault("png_cameras", 1)
    kw.setdefault("video_cameras", 0)
    kw.setdefault("size", 16)
    return synth.simple_spec(version, episodes=kw.pop("episodes", 5), length=kw.pop("length", 40), demos=1, **kw)


def assert_only_labels_changed(before: dict, after: dict) -> None:
    assert before.keys() == after.keys()
    for rel in before:
        b, a = before[rel], after[rel]
        assert a["schema"].equals(b["schema"], check_metadata=True), rel
        assert a["metadata"] == b["metadata"], rel  # the huggingface key byte for byte
        assert a["row_groups"] == b["row_groups"], rel
        assert a["label_type"] == b["label_type"]
        assert a["others"].equals(b["others"]), rel


@pytest.mark.parametrize("version", ["v2.1", "v3.0"])
def test_label_verify_rollback_round_trip(cli, lerobot_home, tmp_path, version):
    dest = make_copy(cli, tmp_path, small_spec(version, rows_per_file=90 if version == "v3.0" else None))
    original = file_state(dest, hidden=True)
    info_before = (dest / "meta" / "info.json").read_bytes()

    values = values_file(dest)
    out = json.loads(cli("label", dest, "--values", values, "--lookahead", "5", "--json").stdout)
    first = file_state(dest, hidden=True)
    assert_only_labels_changed(original, first)
    b = out["breakdown"]
    assert b["autonomous"]["none"] == 0 and b["intervention"]["negative"] == 0
    assert out["files_rewritten"] >= 1
    assert (dest / "meta" / "info.json").read_bytes() == info_before  # adv_ind already declared
    assert cli("verify", dest, "--json").exit_code == 0

    # idempotent: the same run again changes nothing
    again = json.loads(cli("label", dest, "--values", values, "--lookahead", "5", "--json").stdout)
    assert again["files_rewritten"] == 0 and again["transitions"] == {}
    assert file_state(dest, hidden=True).keys() == first.keys()

    # a second, different run, then roll back twice: byte-identical label columns each time
    cli("label", dest, "--values", values, "--positive-ratio", "0.5", "--lookahead", "5")
    second = file_state(dest, hidden=True)
    assert any(second[k]["labels"] != first[k]["labels"] for k in first)
    cli("rollback", dest)
    assert {k: v["labels"] for k, v in file_state(dest, hidden=True).items()} == {
        k: v["labels"] for k, v in first.items()
    }
    cli("rollback", dest, "--to", "copy")
    restored = file_state(dest, hidden=True)
    assert {k: v["labels"] for k, v in restored.items()} == {k: v["labels"] for k, v in original.items()}
    assert_only_labels_changed(original, restored)
    runs = json.loads(cli("rollback", dest, "--list", "--json").stdout)
    assert [r["kind"] for r in runs] == ["label", "label", "label", "rollback", "rollback"]
    assert error_line(cli("rollback", dest, code=2)).startswith("Error: nothing to roll back")


@pytest.mark.parametrize("root", SPECIMENS, ids=specimen_id)
def test_write_back_keeps_lerobot_specimens_intact(cli, lerobot_home, tmp_path, root):
    src = writable_copy(root, tmp_path / "spec")
    cli("copy", src, "--json")
    dest = tmp_path / "spec_vlm_label"
    before = file_state(dest, hidden=True)
    cli("label", dest, "--value-column", "reward_label", "--lookahead", "2")
    after = file_state(dest, hidden=True)
    assert_only_labels_changed(before, after)
    # images still decode through the dataset layer after the rewrite
    from support import episode_frames

    ds = DatasetFiles.open(dest)
    assert episode_frames(ds, 0, "observation.images.wrist").shape == (5, 24, 32, 3)


def test_reference_counts_on_a_generated_dataset(cli, lerobot_home, tmp_path):
    spec = synth.reference_spec("v3.0", cameras={})
    assert (spec.total_frames, spec.intervention_frames) == (21286, 6968)
    dest = make_copy(cli, tmp_path, spec, "vial")
    values = values_file(dest, tmp_path / "values.parquet", seed=7)
    out = json.loads(cli("label", dest, "--values", values, "--json").stdout)
    b = out["breakdown"]
    assert b["labels"] == {"positive": 11264, "negative": 10022, "none": 0}
    assert b["intervention"] == {"positive": 6968, "negative": 0, "none": 0}
    assert b["autonomous"] == {"positive": 4296, "negative": 10022, "none": 0}
    assert cli("verify", dest).exit_code == 0
    # the sidecar holds V, A and the label per frame
    side = pq.read_table(dest / "meta" / "recap_label" / "values.parquet")
    assert side.num_rows == 21286 and side.column_names == [
        "episode_index",
        "frame_index",
        "value",
        "advantage",
        "label",
    ]


def test_dry_run_writes_nothing(cli, lerobot_home, tmp_path):
    dest = make_copy(cli, tmp_path, small_spec())
    before = tree_digest(dest)
    out = json.loads(cli("label", dest, "--value-column", "value_label", "--dry-run", "--json").stdout)
    assert out["dry_run"] and out["transitions"] and out["run"] is None
    # it claims no rewrite (issue 20, item 6); what it would rewrite has its own key
    assert out["files_rewritten"] == 0 and out["files_to_rewrite"] >= 1
    text = cli("label", dest, "--value-column", "value_label", "--dry-run").stdout
    assert f"DRY RUN — nothing written ({out['files_to_rewrite']} data file(s) would be rewritten)" in text
    assert tree_digest(dest) == before


def test_reference_flags_in_underscore_spelling(cli, lerobot_home, tmp_path):
    dest = make_copy(cli, tmp_path, small_spec())
    cli(
        "label",
        "--data_dir",
        dest,
        "--value_column",
        "value_label",
        "--top_percent",
        "30",
        "--lookahead",
        "5",
        "--human_col",
        "intervention",
        "--adv_col",
        "adv_ind",
        "--reward_col",
        "reward_label",
    )
    run = read_lineage(dest)["runs"][-1]
    assert run["settings"]["positive_ratio"] == 0.3 and run["settings"]["lookahead"] == 5


def test_per_task_scope_and_tail_rule_are_recorded(cli, lerobot_home, tmp_path):
    dest = make_copy(cli, tmp_path, small_spec(episodes=7))
    out = json.loads(
        cli(
            "label",
            dest,
            "--value-column",
            "value_label",
            "--threshold-scope",
            "task",
            "--tail-bootstrap",
            "last",
            "--json",
        ).stdout
    )
    assert set(out["thresholds"]) == {"task 0", "task 1"}
    run = read_lineage(dest)["runs"][-1]
    assert run["settings"]["threshold_scope"] == "task" and run["settings"]["tail_bootstrap"] == "last"
    assert set(run["share_per_task"]) == {"0", "1"}


# -- bad input: one Error: line, exit 2, nothing changed -------------------------------------------


def _rewrite(path: Path, fn) -> None:
    table = pq.read_table(path)
    pq.write_table(fn(table), path)


def _set(table: pa.Table, name: str, values) -> pa.Table:
    i = table.schema.get_field_index(name)
    return table.set_column(i, table.schema.field(i), pa.array(values, table.schema.field(i).type))


BAD_CASES = {
    "missing reward column": (["--reward-col", "nope"], None, "column 'nope' is missing"),
    "missing intervention column": (["--human-col", "nope"], None, "column 'nope' is missing"),
    "missing label column": (["--adv-col", "nope"], None, "column 'nope' is missing"),
    "intervention not 0/1": ([], lambda t: _set(t, "intervention", [2] * t.num_rows), "must be 0 or 1"),
    "nan reward": ([], lambda t: _set(t, "reward_label", [float("nan")] * t.num_rows), "rewards must be finite"),
    "inf value": (
        ["--value-column", "reward"],
        lambda t: _set(t, "reward", [float("inf")] * t.num_rows),
        "values must be finite",
    ),
    "duplicate frame_index": ([], lambda t: _set(t, "frame_index", [0] * t.num_rows), "frame_index 0 twice"),
    "ratio outside (0,1]": (["--positive-ratio", "1.5"], None, "--positive-ratio must be in (0, 1]"),
    "ratio and top percent disagree": (["--positive-ratio", "0.3", "--top-percent", "20"], None, "disagree"),
    "lookahead < 1": (["--lookahead", "0"], None, "--lookahead must be an integer >= 1"),
    "two value sources": (["--values", "x.parquet"], None, "exactly one value source"),
}


@pytest.mark.parametrize("case", list(BAD_CASES), ids=list(BAD_CASES))
def test_bad_input(cli, lerobot_home, tmp_path, case):
    flags, mutate, needle = BAD_CASES[case]
    dest = make_copy(cli, tmp_path, small_spec(png_cameras=0))
    if mutate:
        _rewrite(dest / "data" / "chunk-000" / "episode_000002.parquet", mutate)
    before = tree_digest(dest)
    args = ["label", dest, *flags]
    if "--value-column" not in flags and "--values" not in flags:
        args += ["--value-column", "value_label"]
    elif "--values" in flags:
        args += ["--value-column", "value_label"]
    r = cli(*args, code=2)
    assert needle in error_line(r), error_line(r)
    assert tree_digest(dest) == before


def test_values_file_problems(cli, lerobot_home, tmp_path):
    dest = make_copy(cli, tmp_path, small_spec(png_cameras=0))
    table = DatasetFiles.open(dest).read_columns(["episode_index", "frame_index"])
    full = table.append_column("value", pa.array(np.linspace(-1, 0, table.num_rows)))
    before = tree_digest(dest)
    missing = tmp_path / "missing.parquet"
    pq.write_table(full.slice(0, full.num_rows - 3), missing)
    assert "has no value for episode" in error_line(cli("label", dest, "--values", missing, code=2))
    dup = tmp_path / "dup.parquet"
    pq.write_table(pa.concat_tables([full, full.slice(0, 1)]), dup)
    assert "more than once" in error_line(cli("label", dest, "--values", dup, code=2))
    assert tree_digest(dest) == before


def test_refuses_original_symlinks_and_locks(cli, lerobot_home, tmp_path):
    src = synth.write_dataset(tmp_path / "orig", small_spec(png_cameras=0))
    before = tree_digest(src)
    assert "no copy lineage" in error_line(cli("label", src, "--value-column", "value_label", code=2))
    assert tree_digest(src) == before
    cli("copy", src, "--json")
    dest = tmp_path / "orig_vlm_label"
    target = dest / "data" / "chunk-000" / "episode_000001.parquet"
    target.unlink()
    os.symlink(src / "data" / "chunk-000" / "episode_000001.parquet", target)
    assert "is a symlink" in error_line(cli("label", dest, "--value-column", "value_label", code=2))
    target.unlink()
    os.link(src / "data" / "chunk-000" / "episode_000001.parquet", target)
    assert "shares its inode" in error_line(cli("label", dest, "--value-column", "value_label", code=2))
    assert tree_digest(src) == before
    target.unlink()
    (target.parent / target.name).write_bytes((src / "data" / "chunk-000" / "episode_000001.parquet").read_bytes())
    # a live holder (this very process) → refused, naming it
    lock = dest / "meta" / "recap_label" / "lock"
    lock.write_text(json.dumps({"pid": os.getpid(), "host": os.uname().nodename, "command": "label", "started": "now"}))
    assert "is locked by `recap-label label`" in error_line(cli("label", dest, "--value-column", "value_label", code=2))
    # a dead holder → stale lock cleared, the run proceeds
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock.write_text(json.dumps({"pid": dead.pid, "host": os.uname().nodename, "command": "label", "started": "then"}))
    cli("label", dest, "--value-column", "value_label")
    assert not lock.exists()


def test_retire_iteration(cli, lerobot_home, tmp_path):
    src = synth.write_dataset(tmp_path / "vial", small_spec(png_cameras=0))
    cli("copy", src, "--json")
    v1 = tmp_path / "vial_vlm_label"
    alias = lerobot_home / "local" / "vial_vlm_label_active"
    assert not alias.is_symlink()  # a copy is not labeled yet: `_active` never points at one
    cli("label", v1, "--value-column", "value_label", "--lookahead", "5")
    assert os.path.realpath(alias) == str(v1.resolve())
    cli("copy", v1, "--json")
    v2 = tmp_path / "vial_vlm_label_v2"
    assert os.path.realpath(alias) == str(v1.resolve())
    cli("label", "local/vial_vlm_label_v2", "--value-column", "value_label", "--lookahead", "5")
    assert os.readlink(alias) == str(v2.resolve())  # the folder, never the local/ link
    out = json.loads(cli("rollback", v2, "--iteration", "--json").stdout)
    assert out["unregistered"] == ["local/vial_vlm_label_v2"] and out["active_now"] == str(v1.resolve())
    assert os.path.realpath(alias) == str(v1.resolve()) and v2.is_dir()
    assert not (lerobot_home / "local" / "vial_vlm_label_v2").exists()
    out = cli("rollback", "local/vial_vlm_label", "--iteration", "--delete").stdout
    assert not v1.exists() and not alias.exists()
    # iteration 1 has no earlier one: the alias goes, and that is said
    assert (
        "local/vial_vlm_label_active removed: no earlier labeled iteration to point it at; `recap-label activate "
        "<copy>` sets it" in " ".join(out.split())
    )


# -- crashes: SIGKILL at every file operation of the write phase -----------------------------------


def _run_label(dest: Path, crash: str | None, *extra: str) -> subprocess.CompletedProcess:
    values = dest.parent / "crash-values.parquet"
    if not values.exists():
        values_file(dest, values)
    return run_sub(["label", dest, "--values", values, "--lookahead", "5", *extra], crash=crash)


@pytest.mark.slow
def test_sigkill_during_write_phase_is_all_old_or_all_new(cli, lerobot_home, tmp_path):
    spec = small_spec(png_cameras=0, episodes=4)
    reference = make_copy(cli, tmp_path, spec, "ref")
    old = labels_by_file(reference)
    assert _run_label(reference, None).returncode == 0
    new = labels_by_file(reference)
    points = [f"stage:{k}" for k in range(1, 6)] + ["journal:1"] + [f"rename:{k}" for k in range(1, 6)] + ["done:1"]
    for n, point in enumerate(points):
        dest = make_copy(cli, tmp_path, spec, f"k{n}")
        r = _run_label(dest, point)
        assert r.returncode == -9, (point, r.stderr)
        for rel, labels in labels_by_file(dest).items():  # every file readable, entirely old or new
            assert labels in (old[rel], new[rel]), (point, rel)
        schema = pq.read_schema(next((dest / "data").rglob("*.parquet")))
        assert b"huggingface" in schema.metadata
        v = cli("verify", dest, "--json", code=None)
        assert v.exit_code in (0, 1)
        assert _run_label(dest, None).returncode == 0, point
        assert labels_by_file(dest) == new, point
        assert cli("verify", dest).exit_code == 0


def test_info_json_gains_the_label_feature_and_rollback_restores_it(cli, lerobot_home, tmp_path):
    dest = make_copy(cli, tmp_path, small_spec(png_cameras=0))
    info_path = dest / "meta" / "info.json"
    info = json.loads(info_path.read_text())
    del info["features"]["adv_ind"]
    info_path.write_text(json.dumps(info, indent=4))
    before = info_path.read_bytes()
    cli("label", dest, "--values", values_file(dest))
    after = json.loads(info_path.read_text())
    assert after["features"]["adv_ind"] == {"dtype": "string", "shape": [1], "names": None}
    assert list(after) == list(info)  # key order kept
    cli("rollback", dest)
    assert info_path.read_bytes() == before


def test_tail_bootstrap_trap_warning():
    """Positives piling up in the last N frames of failed episodes are reported."""
    from recap_label.lerobot.columns import LabelColumns
    from recap_label.rule import LabelResult, tail_trap_warning

    T, N = 100, 20
    ep = np.repeat(np.arange(4), T)
    fr = np.tile(np.arange(T), 4)
    reward = np.tile(np.r_[np.full(T - 1, -1 / T), 0.0], 4).astype(np.float32)
    reward[2 * T - 1] = reward[4 * T - 1] = -1.0  # episodes 1 and 3 failed
    human = np.zeros(4 * T, bool)
    cols = LabelColumns(
        episode=ep,
        frame=fr,
        human=human,
        labels=np.full(4 * T, "none", object),
        task=np.zeros(4 * T, int),
        reward=reward,
    )
    tail_of_failed = np.isin(ep, [1, 3]) & (fr >= T - N)
    trapped = LabelResult(
        np.zeros(4 * T, np.float32), np.ones(4 * T, bool), tail_of_failed.copy(), {"global": 0.0}, {"global": 4 * T}
    )
    assert "last 20 frames of failed episodes" in tail_trap_warning(cols, trapped, N)
    spread = np.zeros(4 * T, bool)
    spread[::10] = True
    fine = LabelResult(np.zeros(4 * T, np.float32), np.ones(4 * T, bool), spread, {"global": 0.0}, {"global": 4 * T})
    assert tail_trap_warning(cols, fine, N) is None


@pytest.mark.slow  # matplotlib's import alone is most of its 2-3 s
def test_verify_plot(cli, lerobot_home, tmp_path):
    dest = make_copy(cli, tmp_path, small_spec(png_cameras=0))
    r = cli("verify", dest, "--plot", tmp_path / "p.png", code=2)
    assert "no values sidecar" in error_line(r)
    cli("label", dest, "--values", values_file(dest))
    r = cli("verify", dest, "--plot", tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "plot written" in r.stdout


def test_copy_of_a_labeled_copy_starts_fresh(cli, lerobot_home, tmp_path):
    v1 = make_copy(cli, tmp_path, small_spec(png_cameras=0), "it")
    cli("label", v1, "--values", values_file(v1))
    labels_v1 = labels_by_file(v1)
    out = json.loads(cli("copy", v1, "--json").stdout)
    v2 = Path(out["dest"])
    assert v2.name == "it_vlm_label_v2" and out["iteration"] == 2
    state = v2 / "meta" / "recap_label"
    assert sorted(p.name for p in state.iterdir()) == ["lineage.json"]  # no runs, sidecar or lock of v1
    assert read_lineage(v2)["runs"] == [] and read_lineage(v2)["parent"] == str(v1.absolute())
    assert labels_by_file(v2) == labels_v1  # the labels themselves are data: copied
