"""One configuration: flags > RECAP_LABEL_* env > TOML file > defaults, with provenance."""

from __future__ import annotations

import json

import pytest

from recap_label.config import resolve_settings
from recap_label.errors import ConfigError

from support import error_line, run_sub, sub_env


def test_defaults(tmp_path):
    s = resolve_settings(env={}, cwd=tmp_path)
    assert (s.human_col, s.adv_col, s.reward_col) == ("intervention", "adv_ind", "reward_label")
    assert s.base_image_col is None and s.json is False
    assert s.sources["human_col"] == "default"


def test_precedence_flag_env_file_default(tmp_path):
    (tmp_path / "recap-label.toml").write_text(
        'human_col = "from_file"\nadv_col = "file_adv"\nreward_col = "file_reward"\n'
    )
    env = {"RECAP_LABEL_ADV_COL": "env_adv", "RECAP_LABEL_REWARD_COL": "env_reward"}
    s = resolve_settings(env=env, cwd=tmp_path, flags={"reward_col": "flag_reward"})
    assert s.human_col == "from_file" and s.sources["human_col"].startswith("file ")
    assert s.adv_col == "env_adv" and s.sources["adv_col"] == "env RECAP_LABEL_ADV_COL"
    assert s.reward_col == "flag_reward" and s.sources["reward_col"] == "flag --reward-col"


def test_pyproject_table_and_explicit_file(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname="x"\n[tool.recap-label]\nhuman-col = "is_human"\n')
    assert resolve_settings(env={}, cwd=tmp_path).human_col == "is_human"
    other = tmp_path / "other.toml"
    other.write_text('human_col = "explicit"\njson = true\n')
    s = resolve_settings(env={}, cwd=tmp_path, config_path=other)
    assert s.human_col == "explicit" and s.json is True


def test_lerobot_home_from_hf_env(tmp_path):
    s = resolve_settings(env={"HF_LEROBOT_HOME": str(tmp_path)}, cwd=tmp_path)
    assert s.sources["lerobot_home"] == "env HF_LEROBOT_HOME"


@pytest.mark.parametrize(
    "text, needle",
    [
        ('humann_col = "x"\n', "unknown key 'humann_col'"),
        ("human_col = 3\n", "human_col must be a string"),
        ('lookahead = "lots"\n', "lookahead must be an integer"),
        ("json = [1]\n", "json must be true or false"),
        ("human_col = \n", "is not valid TOML"),
    ],
)
def test_bad_config_file(tmp_path, text, needle):
    (tmp_path / "recap-label.toml").write_text(text)
    with pytest.raises(ConfigError, match=needle.replace("[", r"\[")):
        resolve_settings(env={}, cwd=tmp_path)


def test_bad_env_value(tmp_path):
    with pytest.raises(ConfigError, match="RECAP_LABEL_JSON"):
        resolve_settings(env={"RECAP_LABEL_JSON": "maybe"}, cwd=tmp_path)


def test_cli_config_shows_sources(cli, lerobot_home, tmp_path, monkeypatch):
    (tmp_path / "recap-label.toml").write_text('adv_col = "label_v2"\n')
    monkeypatch.setenv("RECAP_LABEL_HUMAN_COL", "teleop")
    out = json.loads(cli("--json", "config").stdout)
    assert out["adv_col"] == {"value": "label_v2", "source": f"file {tmp_path / 'recap-label.toml'}"}
    assert out["human_col"]["source"] == "env RECAP_LABEL_HUMAN_COL"
    table = cli("config").stdout
    assert "label_v2" in table and "teleop" in table


def test_cli_unknown_key_is_one_error_line(cli, lerobot_home, tmp_path):
    (tmp_path / "recap-label.toml").write_text('colour = "red"\n')
    r = cli("config", code=2)
    assert "unknown key 'colour'" in error_line(r)
    r = cli("--config", tmp_path / "nope.toml", "config", code=2)
    assert "does not exist" in error_line(r)


def test_help_and_version(cli):
    assert "Stage 5 of RECAP" in cli("--help").stdout
    for cmd in ("copy", "verify", "config"):
        assert "Example:" in cli(cmd, "--help").stdout
    assert cli("--version").stdout.strip().startswith("recap-label ")


def test_module_entry_point_and_light_imports():
    import subprocess
    import sys

    r = run_sub(["--version"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("recap-label ")
    code = (
        "import sys, recap_label.cli, recap_label.commands.verify, recap_label.commands.copy, "
        "recap_label.commands.rollback, recap_label.cli.render, recap_label.values.sources, "
        "recap_label.values.model_source;"
        "heavy=[m for m in ('torch','transformers','av') if m in sys.modules]; print(heavy)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=sub_env())
    assert r.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "line, key, allowed",
    [
        ("positive_ratio = 30\n", "positive_ratio", "a share in (0, 1]"),
        ("lookahead = 0\n", "lookahead", "an integer from 1"),
        ('tail_bootstrap = "first"\n', "tail_bootstrap", "one of zero, last"),
        ('threshold_scope = "episode"\n', "threshold_scope", "one of global, task"),
        ('precision = "fp16"\n', "precision", "one of auto, tf32, bf16, fp32"),
        ('device = "gpu"\n', "device", "auto, cpu, cuda or cuda:N"),
        ("batch_size = 0\n", "batch_size", "an integer >= 1"),
        ("num_workers = -1\n", "num_workers", "an integer >= 0"),
    ],
)
def test_a_value_out_of_range_fails_config_naming_key_and_file(cli, lerobot_home, tmp_path, line, key, allowed):
    """Issue 20 item 6: validated at resolution (so `config` itself fails), naming the key and the
    file it came from, not a flag nobody typed."""
    (tmp_path / "recap-label.toml").write_text(line)
    err = error_line(cli("config", code=2))
    assert f"config file {tmp_path / 'recap-label.toml'}: {key} must be {allowed}" in err, err
    assert "--" not in err.split(":")[0]


def test_a_value_out_of_range_in_the_environment_names_the_variable(cli, lerobot_home, monkeypatch):
    monkeypatch.setenv("RECAP_LABEL_POSITIVE_RATIO", "30")
    err = error_line(cli("config", code=2))
    assert "environment variable RECAP_LABEL_POSITIVE_RATIO: positive_ratio must be a share in (0, 1]" in err
    assert "got 30;" in err
    monkeypatch.setenv("RECAP_LABEL_POSITIVE_RATIO", "nan")
    assert "positive_ratio must be" in error_line(cli("config", code=2))


def test_config_shows_effective_batch_size_and_workers(cli, lerobot_home, monkeypatch):
    out = json.loads(cli("--json", "config").stdout)
    from recap_label.config import default_num_workers

    assert out["num_workers"]["value"] == default_num_workers()
    assert out["batch_size"]["value"] == {"cuda": 64, "cpu": 8}  # the device is auto
    assert out["lookahead"]["value"] == 50 and out["checkpoint_dir"]["value"] is None
    monkeypatch.setenv("RECAP_LABEL_DEVICE", "cpu")
    assert json.loads(cli("--json", "config").stdout)["batch_size"]["value"] == 8
    table = cli("config").stdout
    assert "8" in next(line for line in table.splitlines() if "batch_size" in line)
    assert "(not set)" in next(line for line in table.splitlines() if "checkpoint_dir" in line)


def test_global_options_after_the_command(cli, lerobot_home, tmp_path):
    (tmp_path / "f.toml").write_text("lookahead = 7\n")
    out = json.loads(cli("config", "--config", tmp_path / "f.toml", "--json").stdout)
    assert out["lookahead"] == {"value": 7, "source": f"file {tmp_path / 'f.toml'}"}
    out = json.loads(cli("config", f"--lerobot-home={tmp_path / 'h'}", "--json").stdout)
    assert out["lerobot_home"]["value"] == str(tmp_path / "h")
    (tmp_path / "bad.toml").write_text("positive_ratio = 30\n")
    assert "bad.toml: positive_ratio" in error_line(cli("config", "--config", tmp_path / "bad.toml", code=2))
