"""A dataset without the label column: `label` creates it in every data file (string; rollout rows
by the rule, demo rows "positive"), declares it in info.json and in each file's `huggingface`
features, all in one commit; `rollback` takes it out again, schema and metadata byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recap_label.demo import synth
from support import FIXTURES, data_files, error_line, run_sub, tree_digest, values_file, writable_copy


def strip_label_column(root: Path, only: list[Path] | None = None, info: bool = True) -> None:
    """Remove adv_ind as a LeRobot writer without it would have written the files: the column, its
    `huggingface` feature, and (with `info`) the info.json feature."""
    for path in only or data_files(root):
        table = pq.read_table(path)
        meta = dict(table.schema.metadata or {})
        if b"huggingface" in meta:
            doc = json.loads(meta[b"huggingface"])
            del doc["info"]["features"]["adv_ind"]
            meta[b"huggingface"] = json.dumps(doc).encode()
        pq.write_table(table.drop_columns(["adv_ind"]).replace_schema_metadata(meta), path)
    if info:
        info_path = root / "meta" / "info.json"
        doc = json.loads(info_path.read_text())
        del doc["features"]["adv_ind"]
        info_path.write_text(json.dumps(doc, indent=4))


def schemas(root: Path) -> dict[str, pa.Schema]:
    return {p.relative_to(root).as_posix(): pq.read_schema(p) for p in data_files(root)}


def others(root: Path) -> dict[str, pa.Table]:
    return {p.relative_to(root).as_posix(): pq.read_table(p) for p in data_files(root)}


def _dataset(tmp_path, version):
    spec = synth.simple_spec(
        version,
        episodes=5,
        length=30,
        demos=1,
        png_cameras=1,
        video_cameras=0,
        size=16,
        rows_per_file=30 if version == "v3.0" else None,
    )
    src = synth.write_dataset(tmp_path / "ds", spec)
    strip_label_column(src)
    return src


@pytest.mark.parametrize("version", ["v2.1", "v3.0"])
def test_label_creates_the_column_everywhere_and_rollback_removes_it(cli, lerobot_home, tmp_path, version):
    src = _dataset(tmp_path, version)
    cli("copy", src, "--json")
    dest = tmp_path / "ds_vlm_label"
    before_schemas, before_tables = schemas(dest), others(dest)
    info_before = (dest / "meta" / "info.json").read_bytes()
    assert all("adv_ind" not in s.names for s in before_schemas.values())

    out = json.loads(cli("label", dest, "--values", values_file(dest), "--lookahead", "5", "--json").stdout)
    n = len(before_schemas)
    assert out["files_rewritten"] == n
    rollout_frames = out["breakdown"]["frames"] - 30  # one 30-frame demo
    assert (
        set(out["transitions"]) == {"none->positive", "none->negative"}
        and sum(out["transitions"].values()) == rollout_frames
    )
    assert (
        f"created the label column 'adv_ind' (string) in {n} data file(s) that lacked it: rollout frames as labeled, "
        "demo frames 'positive'; `recap-label rollback` removes it again"
    ) in out["notes"]
    for rel, schema in schemas(dest).items():
        assert schema.field("adv_ind").type == pa.string()
        assert schema.names == before_schemas[rel].names + ["adv_ind"]
        hf = json.loads(schema.metadata[b"huggingface"])["info"]["features"]
        assert hf["adv_ind"] == {"dtype": "string", "_type": "Value"}
        table = pq.read_table(dest / rel)
        assert table.drop_columns(["adv_ind"]).equals(before_tables[rel])  # every other column as it was
        human = table["intervention"].to_numpy()
        eps = table["episode_index"].to_numpy()
        labels = np.asarray(table["adv_ind"].to_pylist(), dtype=object)
        for e in np.unique(eps):
            rows = eps == e
            if human[rows].all():
                assert set(labels[rows]) == {"positive"}  # demo rows, as pistar's demo writers put there
            else:
                assert set(labels[rows]) <= {"positive", "negative"} and set(labels[rows & (human == 1)]) <= {
                    "positive"
                }
    assert json.loads((dest / "meta" / "info.json").read_text())["features"]["adv_ind"] == {
        "dtype": "string",
        "shape": [1],
        "names": None,
    }
    verify = json.loads(cli("verify", dest, "--json").stdout)
    assert verify["ok"] and {c["name"]: c["status"] for c in verify["checks"]}["demo episodes unchanged"] == "pass"

    # a second run over the created column, then roll both back: the column goes away again
    cli("label", dest, "--values", values_file(dest, seed=1), "--lookahead", "5")
    cli("rollback", dest, "--to", "copy")
    after = schemas(dest)
    assert after.keys() == before_schemas.keys()
    for rel, schema in after.items():
        assert schema.equals(before_schemas[rel], check_metadata=True), rel  # the huggingface key byte for byte
        assert pq.read_table(dest / rel).equals(before_tables[rel])
    assert (dest / "meta" / "info.json").read_bytes() == info_before


def test_a_pistar_mixed_schema_gets_the_column_in_the_demo_files(cli, lerobot_home, tmp_path):
    """pistar's labeler adds adv_ind only to the rollout files it rewrites: the demo file lacks it."""
    spec = synth.simple_spec("v2.1", episodes=4, length=20, demos=1, png_cameras=0, video_cameras=0, size=16)
    src = synth.write_dataset(tmp_path / "ds", spec)
    demo = [p for p in data_files(src) if pq.read_table(p, columns=["intervention"])["intervention"].to_numpy().all()]
    assert len(demo) == 1
    strip_label_column(src, only=demo, info=False)
    cli("copy", src, "--json")
    dest = tmp_path / "ds_vlm_label"
    out = json.loads(cli("label", dest, "--values", values_file(dest), "--lookahead", "5", "--json").stdout)
    assert any(n.startswith("created the label column 'adv_ind' (string) in 1 data file(s)") for n in out["notes"])
    assert all("adv_ind" in s.names for s in schemas(dest).values())
    assert set(pq.read_table(dest / demo[0].relative_to(src))["adv_ind"].to_pylist()) == {"positive"}
    cli("rollback", dest)
    assert "adv_ind" not in pq.read_schema(dest / demo[0].relative_to(src)).names


def test_a_lerobot_specimen_without_the_column(cli, lerobot_home, tmp_path):
    src = writable_copy(FIXTURES / "v3.0" / "video_av1", tmp_path / "spec")
    strip_label_column(src)
    cli("copy", src, "--json")
    dest = tmp_path / "spec_vlm_label"
    before = schemas(dest)
    cli("label", dest, "--value-column", "reward_label", "--lookahead", "2")
    assert all(s.field("adv_ind").type == pa.string() for s in schemas(dest).values())
    assert json.loads(cli("verify", dest, "--json").stdout)["ok"]
    cli("rollback", dest)
    assert all(s.equals(before[rel], check_metadata=True) for rel, s in schemas(dest).items())


def test_a_misspelt_label_column_is_not_created_beside_the_real_one(cli, lerobot_home, tmp_path):
    spec = synth.simple_spec("v2.1", episodes=3, length=20, demos=1, png_cameras=0, video_cameras=0, size=16)
    src = synth.write_dataset(tmp_path / "ds", spec)
    cli("copy", src, "--json")
    dest = tmp_path / "ds_vlm_label"
    before = tree_digest(dest)
    line = error_line(cli("label", dest, "--value-column", "value_label", "--adv-col", "adv_idn", code=2))
    assert line == (
        "Error: column 'adv_idn' is missing from every data file, but 'adv_ind' holds labels (positive); "
        "pass --adv-col adv_ind (label creates a missing label column only where the dataset has none)"
    )
    assert tree_digest(dest) == before
    # verify and diff read it as misspelt too, not as a label column of "none" that fails invariants
    cli("label", dest, "--value-column", "value_label")
    for command in (("verify", dest), ("diff", dest, dest)):
        r = cli(*command, "--adv-col", "adv_idn", code=2)
        assert error_line(r) == line and "INVARIANT" not in r.stdout, command


@pytest.mark.slow
def test_creating_the_column_is_all_or_nothing(cli, lerobot_home, tmp_path):
    """Killed after the first file of the commit was renamed: the next label completes the commit,
    so every file has the column (never some with and some without)."""
    src = _dataset(tmp_path, "v2.1")
    cli("copy", src, "--json")
    dest = tmp_path / "ds_vlm_label"
    values = values_file(dest)
    r = run_sub(["label", dest, "--values", values, "--lookahead", "5"], crash="rename:1")
    assert r.returncode == -9, r.stderr
    have = {rel: "adv_ind" in s.names for rel, s in schemas(dest).items()}
    assert any(have.values()) and not all(have.values())  # mid-commit: the journal says how to finish
    cli("label", dest, "--values", values, "--lookahead", "5")
    assert all("adv_ind" in s.names for s in schemas(dest).values())
    assert json.loads(cli("verify", dest, "--json").stdout)["ok"]


def test_a_later_file_without_the_column_is_copied_and_completed(cli, lerobot_home, tmp_path):
    """The first data file has the column, a later one (a rollout) not: copy counts the labels of
    the files that have it, label creates it in the other, rollback takes it out of that one only."""
    spec = synth.simple_spec("v2.1", episodes=4, length=20, demos=1, png_cameras=0, video_cameras=0, size=16)
    src = synth.write_dataset(tmp_path / "ds", spec)
    last = data_files(src)[-1]
    strip_label_column(src, only=[last], info=False)
    copied = json.loads(cli("copy", src, "--json").stdout)
    assert copied["labels"]["source"] == copied["labels"]["copy"] == {"none": 40, "positive": 20}
    dest = tmp_path / "ds_vlm_label"
    rel = last.relative_to(src).as_posix()
    before = pq.read_schema(dest / rel)
    out = json.loads(cli("label", dest, "--values", values_file(dest), "--lookahead", "5", "--json").stdout)
    assert any(n.startswith("created the label column 'adv_ind' (string) in 1 data file(s)") for n in out["notes"])
    assert set(pq.read_table(dest / rel)["adv_ind"].to_pylist()) <= {"positive", "negative"}
    assert out["breakdown"]["autonomous"]["none"] == 0
    cli("rollback", dest)
    assert pq.read_schema(dest / rel).equals(before, check_metadata=True)
    assert all("adv_ind" in pq.read_schema(p).names for p in data_files(dest) if p.name != last.name)
