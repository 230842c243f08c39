"""Rule, model and device knobs come from the TOML file and the environment like the column
names (flags > env > file > defaults); the value source is chosen by one factory; a rerun that
only relabels from the values sidecar never imports torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from recap_label.config import Settings, resolve_settings
from recap_label.demo import synth
from recap_label.demo.tiny_model import TINY_CHECKPOINT, TINY_TOKENIZER

from support import error_line, lineage_json

CAMS = ["--base-image-col", "observation.images.base"]


@pytest.fixture
def dataset(cli, lerobot_home, tmp_path) -> Path:
    spec = synth.simple_spec("v2.1", episodes=4, length=24, demos=1, png_cameras=1, video_cameras=0, size=16)
    synth.write_dataset(tmp_path / "ds", spec)
    cli("copy", tmp_path / "ds", "--no-register")
    return tmp_path / "ds_vlm_label"


def test_knobs_from_the_file_with_their_sources(tmp_path):
    (tmp_path / "recap-label.toml").write_text(
        'lookahead = 7\npositive_ratio = 0.25\ntail_bootstrap = "last"\nthreshold_scope = "task"\n'
        f'checkpoint_dir = "{TINY_CHECKPOINT}"\ncheckpoint_step = "2"\ntokenizer_path = "{TINY_TOKENIZER}"\n'
        'device = "cpu"\nbatch_size = 3\nnum_workers = 0\nprecision = "fp32"\n'
    )
    s = resolve_settings(cwd=tmp_path, env={"RECAP_LABEL_BATCH_SIZE": "5"}, flags={"lookahead": 9})
    assert (s.lookahead, s.positive_ratio, s.tail_bootstrap, s.threshold_scope) == (9, 0.25, "last", "task")
    assert (s.checkpoint_dir, s.checkpoint_step, s.tokenizer_path) == (TINY_CHECKPOINT, "2", TINY_TOKENIZER)
    assert (s.device, s.batch_size, s.num_workers, s.precision) == ("cpu", 5, 0, "fp32")
    assert s.sources["lookahead"] == "flag --lookahead"
    assert s.sources["batch_size"] == "env RECAP_LABEL_BATCH_SIZE"
    assert s.sources["positive_ratio"].startswith("file ")
    assert s.sources["right_wrist_image_col"] == "default"


def test_injected_environment_is_the_one_read(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_LEROBOT_HOME", str(tmp_path / "real"))
    s = resolve_settings(
        cwd=tmp_path, env={"HF_LEROBOT_HOME": str(tmp_path / "injected"), "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    )
    assert s.lerobot_home == tmp_path / "injected" and s.sources["lerobot_home"] == "env HF_LEROBOT_HOME"
    assert s.model_cache == tmp_path / "xdg" / "recap-label" / "models"
    assert resolve_settings(cwd=tmp_path, env={}).lerobot_home != tmp_path / "real"


def test_help_shows_the_defaults_of_the_settings(cli):
    out = cli("label", "--help").stdout
    assert (
        f"[default: {Settings.default('lookahead')}]" in out
        and f"[default: {Settings.default('positive_ratio')}]" in out
    )
    assert f"[default: {Settings.default('human_col')}]" in out


def test_rule_knobs_from_the_file_reach_the_run(cli, dataset, tmp_path):
    (tmp_path / "recap-label.toml").write_text("lookahead = 5\npositive_ratio = 0.5\n")
    cli("label", dataset, "--value-column", "value_label")
    assert lineage_json(dataset)["runs"][-1]["settings"]["lookahead"] == 5
    assert lineage_json(dataset)["runs"][-1]["settings"]["positive_ratio"] == 0.5
    cli("label", dataset, "--value-column", "value_label", "--top-percent", "40")  # a flag wins over the file
    assert lineage_json(dataset)["runs"][-1]["settings"]["positive_ratio"] == 0.4


def test_a_checkpoint_from_the_file_is_a_default_a_flag_replaces(cli, dataset, tmp_path):
    (tmp_path / "recap-label.toml").write_text(f'checkpoint_dir = "{TINY_CHECKPOINT}"\n')
    out = json.loads(cli("label", dataset, "--value-column", "value_label", "--json").stdout)
    assert out["values_from"] == "value-column"
    r = cli("label", dataset, "--value-column", "value_label", "--checkpoint-dir", TINY_CHECKPOINT, code=2)
    assert (
        error_line(r)
        == "Error: give exactly one value source: --checkpoint-dir, --values or --value-column (got --checkpoint-dir "
        "and --value-column)"
    )


def test_sidecar_rerun_with_a_checkpoint_never_imports_torch(cli, dataset, tmp_path):
    model = [
        "--checkpoint-dir",
        str(TINY_CHECKPOINT),
        "--tokenizer-path",
        str(TINY_TOKENIZER),
        *CAMS,
        "--lookahead",
        "5",
        "--device",
        "cpu",
    ]
    first = json.loads(cli("label", dataset, *model, "--json").stdout)
    assert first["values_from"] == "inference"
    code = (
        "import sys; from recap_label.cli import app\n"
        f"try: app({['label', str(dataset), *model, '--positive-ratio', '0.5', '--json']!r})\n"
        "except SystemExit as e: assert e.code in (0, None), e.code\n"
        "print('HEAVY', [m for m in ('torch', 'transformers', 'av') if m in sys.modules])\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert '"values_from": "sidecar (no inference)"' in r.stdout
    assert "HEAVY []" in r.stdout
    # auto device and precision reuse the fp32 CPU values too
    again = json.loads(cli("label", dataset, *[a for a in model if a not in ("--device", "cpu")], "--json").stdout)
    assert again["values_from"] == "sidecar (no inference)"
    # naming the other precision insists on it: inference again
    bf16 = json.loads(cli("label", dataset, *model, "--precision", "bf16", "--json").stdout)
    assert bf16["values_from"] == "inference"
