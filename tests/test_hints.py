"""Messages a person can act on, on real files: a missing column lists the dataset's columns, a
values file that is not what `--values` needs says what it needs, likely mistakes are warned about
(or refused where nothing sane is meant), and under --json an error is also a JSON object."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from recap_label.demo import synth
from support import TINY_CHECKPOINT, TINY_TOKENIZER, cmd, error_line, sub_env, tiny_spec, tree_digest, values_file

COLUMNS = (
    "observation.state, action, reward_label, value_label, reward, intervention, adv_ind, timestamp, "
    "frame_index, episode_index, index, task_index"
)


@pytest.fixture
def copy(cli, lerobot_home, tmp_path) -> Path:
    src = synth.write_dataset(tmp_path / "ds", tiny_spec())
    cli("copy", src, "--json")
    return tmp_path / "ds_vlm_label"


def refused(cli, dest: Path, *args) -> str:
    """The one Error: line of a `label` that must change nothing."""
    before = tree_digest(dest)
    line = error_line(cli("label", dest, *args, code=2))
    assert tree_digest(dest) == before
    return line


@pytest.mark.parametrize("flag", ["--human-col", "--reward-col"])
def test_missing_column_lists_the_datasets_columns(cli, copy, flag):
    values = values_file(copy)
    line = refused(cli, copy, "--values", values, flag, "interventon")
    first = copy / "data" / "chunk-000" / "episode_000000.parquet"
    assert (
        line == f"Error: column 'interventon' is missing from {first}; pass the right {flag}; columns in ds_vlm_label: "
        f"{COLUMNS}"
    )


def test_missing_value_column_lists_the_float_columns(cli, copy):
    line = refused(cli, copy, "--value-column", "value_lable")
    assert line == (
        "Error: value column 'value_lable' is not in ds_vlm_label; pass a --value-column that is "
        "(float columns there: reward_label, value_label, reward, timestamp)"
    )


def test_a_0_1_flag_is_no_value_column(cli, copy):
    line = refused(cli, copy, "--value-column", "intervention")
    assert line == (
        "Error: value column 'intervention' holds only 0 and 1 (a flag, not a value estimate); "
        "pass a float column of V such as value_label"
    )


def test_values_file_that_is_csv_says_what_values_needs(cli, copy, tmp_path):
    csv = tmp_path / "values.csv"
    pcsv.write_csv(pq.read_table(values_file(copy)), csv)
    assert refused(cli, copy, "--values", csv) == (
        f"Error: values file {csv} is a text (CSV?) file, not parquet; --values needs a parquet file with columns "
        "episode_index, frame_index, value (e.g. pandas DataFrame.to_parquet)"
    )
    npy = tmp_path / "values.npy"
    npy.write_bytes(b"\x93NUMPY\x01\x00")
    assert refused(cli, copy, "--values", npy).startswith(
        f"Error: values file {npy} is not a parquet file; --values needs a parquet file"
    )


def test_values_column_names_the_files_value_column(cli, copy, tmp_path):
    table = pq.read_table(values_file(copy))
    renamed = tmp_path / "v.parquet"
    pq.write_table(table.rename_columns(["episode_index", "frame_index", "V"]), renamed)
    assert refused(cli, copy, "--values", renamed) == (
        f"Error: values file {renamed} has no column 'value' (its columns: episode_index, frame_index, V); "
        "name the value column with --values-column"
    )
    out = json.loads(
        cli("label", copy, "--values", renamed, "--values-column", "V", "--lookahead", "5", "--json").stdout
    )
    same = json.loads(cli("label", copy, "--values", values_file(copy), "--lookahead", "5", "--json").stdout)
    assert out["breakdown"] == same["breakdown"] and same["files_rewritten"] == 0  # the same V, the same labels
    assert "--values-column names the value column of a --values file" in refused(
        cli, copy, "--value-column", "value_label", "--values-column", "V"
    )


def test_tokenizer_path_that_is_a_folder(cli, copy, tmp_path):
    folder = tmp_path / "tok"
    folder.mkdir()
    (folder / "tokenizer.model").write_bytes(TINY_TOKENIZER.read_bytes())
    line = refused(
        cli,
        copy,
        "--checkpoint-dir",
        TINY_CHECKPOINT,
        "--tokenizer-path",
        folder,
        "--base-image-col",
        "observation.images.base",
    )
    assert (
        line == f"Error: --tokenizer-path {folder} is a folder; pass the tokenizer.model file itself "
        f"({folder / 'tokenizer.model'} is there: pass that)"
    )


def test_non_binary_human_column_shows_a_plain_number(cli, copy):
    line = refused(cli, copy, "--values", values_file(copy), "--human-col", "value_label")
    assert "np." not in line and "float32" not in line
    assert line.startswith("Error: column 'value_label' holds -") and line.endswith(
        "; it must be 0 or 1 on every frame (fix the data or pass the right --human-col)"
    )


def test_lock_permission_error_names_the_path_once(cli, copy):
    state = copy / "meta" / "recap_label"
    os.chmod(state, 0o555)
    try:
        if os.access(state, os.W_OK):
            pytest.skip("running as root: permissions are not enforced")
        line = refused(cli, copy, "--values", values_file(copy))
    finally:
        os.chmod(state, 0o755)
    assert line.startswith("Error: permission denied while taking the lock")
    assert line.count(str(state)) == 1, line


def test_lock_error_names_the_path_once(cli, copy):
    lock = copy / "meta" / "recap_label" / "lock"
    lock.mkdir()  # what a stray folder in the lock's place gives, also to root (who ignores modes)
    line = refused(cli, copy, "--values", values_file(copy))
    assert (
        line == f"Error: Is a directory while taking the lock {lock}; fix the cause and run again (nothing was changed)"
    )


@pytest.mark.parametrize("n", [str(2**63), str(10**30)])
def test_huge_lookahead_is_an_error_line(cli, copy, n):
    assert refused(cli, copy, "--values", values_file(copy), "--lookahead", n) == (
        f"Error: --lookahead {n} is too large; pass a number of frames up to 2,147,483,647 (beyond an episode's end "
        f"N means its whole rest)"
    )


def test_verify_plot_destination_is_checked_before_the_work(cli, copy, tmp_path):
    cli("label", copy, "--values", values_file(copy), "--lookahead", "5")
    before = tree_digest(copy)
    line = error_line(cli("verify", copy, "--plot", tmp_path / "missing_dir" / "x.png", "--repair", code=2))
    assert (
        line
        == f"Error: --plot {tmp_path / 'missing_dir' / 'x.png'}: folder {tmp_path / 'missing_dir'} does not exist; "
        f"create it first or pass another path"
    )
    assert tree_digest(copy) == before
    assert "the plot is a PNG" in error_line(cli("verify", copy, "--plot", tmp_path / "x.pdf", code=2))


def test_unknown_environment_variable_is_warned(cli, copy, monkeypatch):
    monkeypatch.setenv("RECAP_LABEL_HUMANCOL", "is_human")
    r = cli("config", "--json")
    assert r.stderr.startswith(
        "warning: unknown environment variable RECAP_LABEL_HUMANCOL is ignored; known: RECAP_LABEL_ADV_COL, "
    )
    assert json.loads(r.stdout)["human_col"]["value"] == "intervention"


# -- likely mistakes -------------------------------------------------------------------------------


def test_top_percent_below_one_is_warned(cli, copy):
    r = cli("label", copy, "--values", values_file(copy), "--lookahead", "5", "--top-percent", "0.3", "--json")
    assert (
        "warning: --top-percent 0.3 labels 0.3 % of the autonomous frames positive; for 30 % pass --top-percent 30 "
        "(or --positive-ratio 0.3)" in r.stderr
    )
    assert not cli("label", copy, "--values", values_file(copy), "--lookahead", "5", "--top-percent", "30").stderr
    for n in ("0", "-5"):  # refused with its one Error line, no warning that suggests the same value again
        assert (
            refused(cli, copy, "--values", values_file(copy), "--top-percent", n)
            == f"Error: --top-percent must be in (0, 100], got {float(n)}"
        )


def test_lookahead_longer_than_every_episode_is_warned(cli, copy):
    out = json.loads(cli("label", copy, "--values", values_file(copy), "--lookahead", "500", "--json").stdout)
    assert out["warnings"][0] == (
        "--lookahead 500 is not shorter than any rollout episode (longest: 24 frames): every advantage "
        "sums the rewards to the episode's end; N counts frames (at 30 fps, 50 = 1.7 s)"
    )
    again = json.loads(cli("label", copy, "--values", values_file(copy), "--lookahead", "5", "--json").stdout)
    assert not any("--lookahead" in w for w in again["warnings"])


def two_camera_copy(cli, tmp_path: Path) -> Path:
    """Cameras named as LeRobot recorders name them (no fallback name recap-label would guess)."""
    spec = tiny_spec(png=1)
    cam = next(iter(spec.cameras.values()))
    spec = dataclasses.replace(
        spec, cameras={"observation.images.head_camera": cam, "observation.images.left_wrist_camera": cam}
    )
    src = synth.write_dataset(tmp_path / "cams", spec)
    cli("copy", src, "--json")
    return tmp_path / "cams_vlm_label"


def test_same_camera_for_two_slots_is_refused(cli, lerobot_home, tmp_path):
    dest = two_camera_copy(cli, tmp_path)
    cam = "observation.images.head_camera"
    line = refused(
        cli,
        dest,
        "--checkpoint-dir",
        TINY_CHECKPOINT,
        "--tokenizer-path",
        TINY_TOKENIZER,
        "--base-image-col",
        cam,
        "--wrist-image-col",
        cam,
    )
    assert line == (
        f"Error: camera {cam!r} is given for two model slots (base_0_rgb, wrist_0_rgb); each slot needs its own camera "
        "(cameras in cams_vlm_label: observation.images.head_camera, observation.images.left_wrist_camera)"
    )


@pytest.mark.slow  # one tiny-model inference
def test_only_the_base_camera_is_warned(cli, lerobot_home, tmp_path):
    dest = two_camera_copy(cli, tmp_path)
    r = cli(
        "label",
        dest,
        "--checkpoint-dir",
        TINY_CHECKPOINT,
        "--tokenizer-path",
        TINY_TOKENIZER,
        "--base-image-col",
        "observation.images.head_camera",
        "--lookahead",
        "5",
        "--num-workers",
        "0",
        "--json",
    )
    assert (
        "warning: no wrist camera: slot wrist_0_rgb gets a blank image, although cams_vlm_label has "
        "observation.images.left_wrist_camera; pass --wrist-image-col (the critic was trained with two cameras)"
    ) in r.stderr


# -- --json errors ---------------------------------------------------------------------------------


def test_json_error_is_an_object_on_stdout_too(cli, copy, tmp_path):
    r = cli("label", copy, "--values", values_file(copy), "--value-column", "value_label", "--json", code=2)
    line = error_line(r)
    assert json.loads(r.stdout) == {"error": line.removeprefix("Error: "), "exit_code": 2, "kind": "bad_input"}
    r = cli("--json", "verify", tmp_path / "nothere", code=2)
    assert json.loads(r.stdout)["kind"] == "dataset_error" and json.loads(r.stdout)["error"] == error_line(
        r
    ).removeprefix("Error: ")
    assert cli("verify", tmp_path / "nothere", code=2).stdout == ""  # without --json: stderr only
    r = cli("--json", "--config", tmp_path / "missing.toml", "config", code=2)  # an error before any command runs
    assert json.loads(r.stdout) == {
        "error": error_line(r).removeprefix("Error: "),
        "exit_code": 2,
        "kind": "config_error",
    }


def test_json_usage_error_is_an_object_on_stdout_too(cli, copy):
    """A flag or value Click rejects before the command runs (`--lookahead 1e30`, a misspelt option
    or command): under --json the same JSON object on stdout; without it, nothing on stdout."""
    for args, flag_first in (
        (("label", copy, "--lookahead", "1e30", "--json"), False),
        (("labl", copy), True),
        (("label", copy, "--lookahed", "5"), True),
        (("--bogus", "label", copy), True),
    ):
        r = cli(*(("--json", *args) if flag_first else args), code=2)
        line = r.stderr.strip().splitlines()[-1]
        assert line.startswith("Error: ") and json.loads(r.stdout) == {
            "error": line.removeprefix("Error: "),
            "exit_code": 2,
            "kind": "usage_error",
        }, r.stdout
        assert cli(*args[:-1] if not flag_first else args, code=2).stdout == ""
    assert (
        cli("--json", "label", copy, "--no-json", "--lookahead", "x", code=2).stdout == ""
    )  # the command's own flag wins


# -- Ctrl-C during copy ----------------------------------------------------------------------------


def test_ctrl_c_during_copy_says_what_is_left(lerobot_home, tmp_path):
    src = synth.write_dataset(tmp_path / "ds", tiny_spec())
    proc = subprocess.Popen(
        cmd("copy", src), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=sub_env(slow="copy-file:0.3")
    )
    deadline = time.monotonic() + 30
    while not list(tmp_path.glob(".recap-copy-*")) and time.monotonic() < deadline:
        time.sleep(0.05)  # until the copy is being built: files are copied at 0.3 s each
    time.sleep(0.4)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    dest = tmp_path / "ds_vlm_label"
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == (
        f"Error: interrupted; the copy was taken back, nothing is left of {dest} "
        "(the source was only read); run the same command to copy again"
    )
    assert not dest.exists() and not list(tmp_path.glob(".recap-copy-*"))
    assert not (lerobot_home / "local").exists() or not any((lerobot_home / "local").iterdir())
