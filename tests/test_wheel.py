"""A wheel built from the checkout installs into a fresh virtualenv and runs the main job without
the repository beside it (`make wheel-check`; ~20 s on two cores)."""

from __future__ import annotations

import pytest

from benchmarks import wheel_check


@pytest.mark.slow
def test_wheel_installs_and_runs_outside_the_checkout(tmp_path, capsys):
    assert wheel_check.main(["--work", str(tmp_path / "work")]) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    installed = tmp_path / "work" / "venv" / "lib"
    assert (
        "import recap_label from the wheel" in out and str(installed) in out
    )  # not the checkout, not the editable install
    passed = [line for line in out.splitlines() if line.startswith("ok  ")]
    for step in (
        "recap-label --help",
        "recap-label copy rollouts",
        "--value-column value_label",
        "recap-label verify",
        "python -m recap_label.demo ",
    ):
        assert any(step in line for line in passed), out
    assert "FAIL" not in out and "wheel check passed" in out
