"""Output on an 80-column terminal and under a pipe (COLUMNS=80, not a tty): nothing cut, no line
broken in the middle of a path, `rollback --list` honest about which run's labels are on disk."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest

from recap_label.demo import synth
from support import FIXTURES, Cli, cmd, sub_env, tiny_spec, values_file, writable_copy


@pytest.fixture(autouse=True)
def columns_80(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")  # rich reads it; CliRunner's output is not a terminal


def run80(*args, home: Path, cwd: Path | None = None, code: int = 0) -> str:
    """The CLI in-process on 80 columns, its stdout ('home' is the fixture's LeRobot home, cwd tmp_path)."""
    if cwd is not None:
        os.chdir(cwd)
    return Cli()(*args, code=code).stdout


@pytest.fixture
def long_copy(lerobot_home, tmp_path) -> Path:
    """A copy whose path alone is wider than half the terminal."""
    src = synth.write_dataset(tmp_path / "a_dataset_folder_with_a_long_descriptive_name", tiny_spec())
    out = run80("copy", src, home=lerobot_home)
    dest = tmp_path / f"{src.name}_vlm_label"
    entry = lerobot_home / "local" / dest.name
    assert f"registered: {entry} → {dest}  (repo_id local/{dest.name})" in out.splitlines()
    assert any(
        line.startswith("copied 8 files") and line.endswith(f"→ {dest}  (iteration 1)") for line in out.splitlines()
    )
    return dest


def test_label_report_lines_stay_whole(long_copy, lerobot_home):
    out = run80(
        "label", long_copy, "--values", values_file(long_copy), "--lookahead", "5", home=lerobot_home
    ).splitlines()
    assert f"run-0001: 3 data file(s) rewritten · {long_copy}" in out
    assert "label transitions (rollout frames)" in out


def test_rollback_list_marks_only_the_run_on_disk_and_keeps_the_time(long_copy, lerobot_home):
    empty = run80("rollback", long_copy, "--list", home=lerobot_home)
    assert empty == f"no runs recorded for {long_copy}: no label run yet, its labels are those it was copied with\n"
    values = values_file(long_copy)
    run80("label", long_copy, "--values", values, "--lookahead", "5", home=lerobot_home)
    run80("label", long_copy, "--values", values, "--lookahead", "5", "--positive-ratio", "0.5", home=lerobot_home)
    out = run80("rollback", long_copy, "--list", home=lerobot_home)
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("run-") and " values: " not in line}
    assert re.search(
        r"run-0001 +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d +label +0\.3 +5 +30\.\d\d % +replaced by run-0002$",
        rows["run-0001"].rstrip(),
    ), out
    assert re.search(r"run-0002 .* label +0\.5 +5 +\d+\.\d\d % +active$", rows["run-0002"].rstrip()), out
    assert sum(" active" in line for line in out.splitlines()) == 1
    # each run's value source, whole, on a line of its own
    assert f"run-0001 values: values file {values}" in out.splitlines()
    runs = json.loads(run80("rollback", long_copy, "--list", "--json", home=lerobot_home))
    assert [r["labels_on_disk"] for r in runs] == [False, True]
    assert max(len(line.rstrip()) for line in out.splitlines()[1:] if " values: " not in line) <= 80  # the table
    run80("rollback", long_copy, home=lerobot_home)  # undo run-0002: run-0001's labels are on disk again
    rows = {
        line.split()[0]: line
        for line in run80("rollback", long_copy, "--list", home=lerobot_home).splitlines()
        if line.startswith("run-") and " values: " not in line
    }
    assert rows["run-0001"].rstrip().endswith(" active") and rows["run-0002"].rstrip().endswith("undone by run-0003")


def test_verify_names_a_missing_file_whole(lerobot_home, tmp_path):
    """The invariants table folds a long detail onto more lines instead of cutting it with '…':
    the missing file is there to read (and restore)."""
    src = writable_copy(FIXTURES / "v2.1" / "video_av1", tmp_path / "spec")
    run80("copy", src, home=lerobot_home)
    long_copy = tmp_path / "spec_vlm_label"
    video = sorted((long_copy / "videos").rglob("*.mp4"))[-1]
    video.unlink()
    detail = {
        c["name"]: c for c in json.loads(run80("verify", long_copy, "--json", home=lerobot_home, code=1))["checks"]
    }["every file meta/ names is present"]["detail"]
    assert video.relative_to(long_copy).as_posix() in detail
    out = run80("verify", long_copy, home=lerobot_home, code=1).splitlines()
    assert "…" not in "\n".join(out) and max(len(line) for line in out if line.startswith("│")) <= 80
    start = next(i for i, line in enumerate(out) if "every file meta/ names" in line)
    cells = []
    for line in out[start:]:
        if line.startswith("│ ") and (not cells or line.split("│")[1].strip() in ("", "present")):
            cells.append(line.split("│")[3].strip())
        elif cells:
            break
    assert "".join(cells).replace(" ", "") == detail.replace(" ", "")


def test_config_is_not_cut(lerobot_home, tmp_path):
    cache = (
        tmp_path
        / "a"
        / "rather"
        / "long"
        / "tokenizer"
        / "folder"
        / "that"
        / "does"
        / "not"
        / "fit"
        / "tokenizer.model"
    )
    (tmp_path / "recap-label.toml").write_text(f'tokenizer_path = "{cache}"\nlookahead = 7\n')
    out = run80("config", home=lerobot_home, cwd=tmp_path).splitlines()
    assert f'tokenizer_path = "{cache}"  # file {tmp_path / "recap-label.toml"}' in out
    assert f"lookahead = 7  # file {tmp_path / 'recap-label.toml'}" in out
    assert "json = false  # default" in out
    # the lines are TOML: they read back as the same configuration
    (tmp_path / "again.toml").write_text("\n".join(line.split("  #")[0] for line in out[1:]) + "\n")
    again = json.loads(run80("--config", tmp_path / "again.toml", "config", "--json", home=lerobot_home, cwd=tmp_path))
    assert again["tokenizer_path"]["value"] == str(cache) and again["lookahead"]["value"] == 7
    # a key not set is a comment (TOML has no null), and stays not set; a count is an integer
    assert "# checkpoint_dir: (not set)  # default" in out
    assert again["checkpoint_dir"] == {"value": None, "source": "default"}
    assert isinstance(again["num_workers"]["value"], int) and isinstance(again["lookahead"]["value"], int)


def test_rollback_help_shows_each_example_on_its_own_line(lerobot_home):
    out = run80("rollback", "--help", home=lerobot_home).splitlines()
    assert any(
        line.strip().startswith("recap-label rollback local/vial_v21_vlm_label_v3")
        and line.strip().endswith("# undo the last label run")
        for line in out
    )
    assert any(line.strip().endswith("--iteration  # back to _v2") for line in out)
    out = [
        line.strip() for line in run80("diff", "--help", home=lerobot_home).splitlines()
    ]  # the same for diff's two examples
    assert "recap-label diff local/vial_v21_vlm_label local/vial_v21_vlm_label_v2" in out
    assert "recap-label diff local/vial_v21_vlm_label@run-0001 local/vial_v21_vlm_label@run-0002" in out


@pytest.mark.slow  # copies 300 MB: the bar shows only for large copies
def test_ctrl_c_during_copy_closes_the_progress_bar(lerobot_home, tmp_path):
    src = synth.write_dataset(tmp_path / "ds", tiny_spec())
    with open(src / "a_big_file.bin", "wb") as f:  # sparse: cheap to make, 300 MB to copy
        f.truncate(300 << 20)
    master, slave = pty.openpty()
    env = {**sub_env(lerobot_home, slow="copy-file:0.5"), "COLUMNS": "80", "TERM": "xterm"}
    proc = subprocess.Popen(cmd("copy", src), stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    seen, deadline = b"", time.monotonic() + 60
    while b"MB/s" not in seen and time.monotonic() < deadline:  # the bar is drawn
        if select.select([master], [], [], 0.1)[0]:
            seen += os.read(master, 65536)
    time.sleep(0.6)
    proc.send_signal(signal.SIGINT)
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    proc.wait(timeout=60)
    os.close(master)
    assert proc.returncode == 130
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", seen.decode(errors="replace"))
    after = text[text.index("Error:") :]
    assert "━" not in after and "MB" not in after, repr(after)  # the bar is gone, not drawn again below the error
    assert after.splitlines()[0].startswith("Error: interrupted; the copy was taken back") and after.splitlines()[
        0
    ].endswith("run the same command to copy again")


def test_iterations_rows_fit_80_columns(long_copy, lerobot_home):
    """Each iteration is one whole row: the share, the threshold and the state are never cut."""
    run80("label", long_copy, "--values", values_file(long_copy), "--lookahead", "5", home=lerobot_home)
    out = run80("iterations", long_copy, home=lerobot_home).splitlines()
    table = out[1:3]  # the header and the one row; the paths follow, whole, on lines of their own
    assert all(len(line) <= 80 for line in table), out
    row = table[1]
    assert re.search(r" 1 +30\.\d % +-?\d\.\d+ +- +registered$", row.rstrip()), out
    assert f"{long_copy.name}: {long_copy}" in out


def test_diff_settings_fold_a_long_path_instead_of_cutting_it(long_copy, lerobot_home):
    run80("label", long_copy, "--values", values_file(long_copy, seed=0), "--lookahead", "5", home=lerobot_home)
    run80("copy", f"local/{long_copy.name}_active", home=lerobot_home)
    v2 = long_copy.parent / f"{long_copy.name}_v2"
    run80("label", v2, "--values", values_file(v2, seed=1), "--lookahead", "5", home=lerobot_home)
    settings = json.loads(run80("diff", long_copy, v2, "--json", home=lerobot_home))["settings"]
    out = run80("diff", long_copy, v2, home=lerobot_home)
    table = out[out.index("thresholds and settings that differ") :]
    cells = "".join(
        line.split("│")[3].strip() for line in table.splitlines() if line.startswith("│")
    )  # column B, unfolded
    # a path is folded whole; a content hash is shown by its first 12 digits on purpose (whole in --json)
    hashes = {k: vb for k, (_, vb) in settings.items() if k.endswith("sha256") and vb is not None}
    paths = {k: vb for k, (_, vb) in settings.items() if k not in hashes and vb is not None}
    assert all(str(vb) in cells for vb in paths.values()), (paths, cells)
    assert all(f"{str(vb)[:12]}…" in cells for vb in hashes.values()), (hashes, cells)
    assert out.count("…") == sum((va is not None) + 1 for k, (va, _) in settings.items() if k in hashes)
    assert max(len(line.rstrip()) for line in table.splitlines()) <= 80
