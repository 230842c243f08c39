"""The README's promises that code can check: its configuration table lists exactly the keys of
`Settings` with their defaults, its example `recap-label.toml` parses into those keys, and shell
completion is there the Typer way."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import fields

from recap_label.config import Settings
from support import PKG_ROOT, cmd, sub_env

README = PKG_ROOT / "README.md"


def configuration_section() -> str:
    text = README.read_text(encoding="utf-8")
    return text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]


def table_rows() -> list[list[str]]:
    rows = [
        line.strip().strip("|").split("|") for line in configuration_section().splitlines() if line.startswith("| `")
    ]
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
    assert got["lookahead"]["value"] == 50 and got["wrist_image_col"]["value"] == "observation.images.left_wrist_camera"


def test_shell_completion_the_typer_way(tmp_path):
    env = sub_env()
    script = subprocess.run(cmd("--show-completion", "bash"), capture_output=True, text=True, env=env, timeout=60)
    assert script.returncode == 0 and "complete -o default -F _recap_label_completion recap-label" in script.stdout
    # what the shell asks the completion for: the commands that start with `ro`, the options of label
    env.update(_RECAP_LABEL_COMPLETE="complete_bash", COMP_WORDS="recap-label ro", COMP_CWORD="1")
    assert subprocess.run(cmd(), capture_output=True, text=True, env=env, timeout=60).stdout.split() == ["rollback"]
    env.update(COMP_WORDS="recap-label label --positive", COMP_CWORD="2")
    assert (
        "--positive-ratio" in subprocess.run(cmd(), capture_output=True, text=True, env=env, timeout=60).stdout.split()
    )
    help_text = subprocess.run(cmd("--help"), capture_output=True, text=True, env=sub_env(), timeout=60).stdout
    assert "--install-completion" in help_text


def layout_files() -> list[str]:
    """The files the Layout table names, as repository paths. A cell such as "`cli/app.py`,
    `options.py`" names `recap_label/cli/app.py` and `recap_label/cli/options.py`: a bare name is in
    the folder of the path before it; paths are inside the package unless they start with
    `benchmarks/`."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    named = []
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        folder = ""
        for token in re.findall(r"`([^`]+\.py)`", line.strip("|").split("|")[0]):
            if "/" in token:
                folder, _, name = token.rpartition("/")
            else:
                name = token
            inside = folder if folder.startswith("benchmarks") else f"recap_label/{folder}".rstrip("/")
            named.append(f"{inside}/{name}")
    return named


def test_layout_table_names_every_module_and_only_real_ones():
    named = layout_files()
    modules = {
        str(p.relative_to(PKG_ROOT))
        for folder in ("recap_label", "benchmarks")
        for p in (PKG_ROOT / folder).rglob("*.py")
        if p.name != "__init__.py"
    }
    assert len(named) == len(set(named)), sorted(n for n in named if named.count(n) > 1)
    assert sorted(set(named) - modules) == [], "the Layout table names files that do not exist"
    assert sorted(modules - set(named)) == [], "modules missing from the README's Layout table"
