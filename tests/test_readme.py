"""The README's promises that code can check: its configuration table lists exactly the keys of
`Settings` with their defaults, its example `recap-label.toml` parses into those keys, and shell
completion is there the Typer way."""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import fields
from pathlib import Path

from recap_label.config import Settings
from support import PKG_ROOT, cmd, sub_env

README = PKG_ROOT / "README.md"


def configuration_section() -> str:
    text = README.read_text(encoding="utf-8")
    return text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]


def table_rows() -> list[list[str]]:
    rows = [line.strip().strip("|").split("|") for line in configuration_section().splitlines() if line.startswith("| `")]
    return [[cell.strip() for cell in row] for row in rows]


def test_configuration_table_lists_every_setting_with_its_default():
    keys = {f.name for f in fields(Settings) if f.name != "sources"}
    documented = {}
    for key_cell, default_cell, _meaning in table_rows():
        for key in re.findall(r"`([a-z_]+)`", key_cell):
            documented[key] = default_cell
    assert set(documented) == keys, (sorted(keys - set(documented)), sorted(set(documented) - keys))
    for key, cell in documented.items():
        literal = re.fullmatch(r"`([^`]+)`", cell)
        if literal and key not in ("lerobot_home", "model_cache"):  # those depend on the environment
            default = Settings.default(key)
            assert literal.group(1) == (json.dumps(default) if isinstance(default, bool) else str(default)), key


def test_example_config_file_parses(lerobot_home, tmp_path, cli):
    block = re.search(r"```toml\n(.*?)```", configuration_section(), re.S).group(1)
    (tmp_path / "recap-label.toml").write_text(block)
    got = json.loads(cli("config", "--json").stdout)  # the lerobot_home fixture runs in tmp_path
    in_file = [line.split("=")[0].strip() for line in block.splitlines() if "=" in line and not line.startswith("#")]
    assert in_file and all(got[k]["source"] == f"file {tmp_path / 'recap-label.toml'}" for k in in_file)
    assert got["lookahead"]["value"] == "50" and got["wrist_image_col"]["value"] == "observation.images.left_wrist_camera"


def test_shell_completion_the_typer_way(tmp_path):
    env = sub_env()
    script = subprocess.run(cmd("--show-completion", "bash"), capture_output=True, text=True, env=env, timeout=60)
    assert script.returncode == 0 and "complete -o default -F _recap_label_completion recap-label" in script.stdout
    # what the shell asks the completion for: the commands that start with `ro`, the options of label
    env.update(_RECAP_LABEL_COMPLETE="complete_bash", COMP_WORDS="recap-label ro", COMP_CWORD="1")
    assert subprocess.run(cmd(), capture_output=True, text=True, env=env, timeout=60).stdout.split() == ["rollback"]
    env.update(COMP_WORDS="recap-label label --positive", COMP_CWORD="2")
    assert "--positive-ratio" in subprocess.run(cmd(), capture_output=True, text=True, env=env, timeout=60).stdout.split()
    help_text = subprocess.run(cmd("--help"), capture_output=True, text=True, env=sub_env(), timeout=60).stdout
    assert "--install-completion" in help_text
