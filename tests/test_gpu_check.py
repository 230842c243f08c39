"""`python -m benchmarks.gpu_check`: runs from a bare source tree (no install, no polars)
and stops with a clear message where CUDA is needed; its CPU self-test drives every step."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support import PKG_ROOT

# run the check as a bare GPU host would: polars unimportable, the installed (editable) copy of
# the package invisible, only the copied source tree on PYTHONPATH
BARE = """
import importlib.abc, sys
class NoPolars(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "polars" or name.startswith("polars."):
            raise ImportError("polars is not installed on this host")
sys.meta_path[:] = [NoPolars()] + [f for f in sys.meta_path if "editable" not in repr(f).lower()]
import runpy
sys.argv = ["gpu_check", *sys.argv[1:]]
runpy.run_module("benchmarks.gpu_check", run_name="__main__")
"""


def bare_tree(tmp_path: Path, with_tests: bool = False) -> Path:
    src = tmp_path / "checkout"
    for folder in ("recap_label", "benchmarks"):
        shutil.copytree(PKG_ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    if with_tests:
        shutil.copytree(PKG_ROOT / "tests", src / "tests", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(PKG_ROOT / "pyproject.toml", src / "pyproject.toml")
    return src


def run_bare(src: Path, *args: str, timeout: int) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECAP_LABEL_")}
    env["PYTHONPATH"] = str(src)
    return subprocess.run(
        [sys.executable, "-c", BARE, *args], cwd=src, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_stops_where_cuda_is_needed_with_one_clear_line(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this host has CUDA: the check runs in full here")
    src = bare_tree(tmp_path)
    r = run_bare(src, str(tmp_path / "out"), timeout=120)
    assert r.returncode == 2, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [
        "Error: gpu-check needs a CUDA device, and this torch is a CPU-only build "
        f"(torch {torch.__version__}); run it on a GPU host: PYTHONPATH=<checkout> python -m benchmarks.gpu_check "
        f"OUT_DIR"
    ] or errors[0].startswith("Error: gpu-check needs a CUDA device, and torch sees no CUDA device"), r.stderr
    assert "Traceback" not in r.stderr
    report = json.loads((tmp_path / "out" / "gpu-check.json").read_text())
    assert report["env"]["source"] == str(src)  # the copied tree, not an installed package
    assert report["env"]["polars_imported"] is False
    assert [(s["step"], s["status"]) for s in report["steps"]] == [("env", "done"), ("cuda", "stopped")]
    assert "everything after this point needs a GPU" in (tmp_path / "out" / "gpu-check.txt").read_text()


@pytest.mark.slow
def test_cpu_self_test_runs_every_step_without_polars(tmp_path):
    src = bare_tree(tmp_path, with_tests=True)
    r = run_bare(
        src, str(tmp_path / "out"), "--quick", "--self-test-on-cpu", "--cache-dir", str(tmp_path / "cache"), timeout=900
    )
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "gpu-check.json").read_text())
    steps = {s["step"]: s["status"] for s in report["steps"]}
    assert all(status == "done" for status in steps.values()), steps
    rows = report["results"]
    agreement = [row for row in rows if row["step"] == "agreement"]
    assert len(agreement) == 4 and all(row["ok"] for row in agreement), agreement
    label = [row for row in rows if row["step"] == "label"]
    assert len(label) == 2 and all(row["frames"] == 150 and row["value"] > 0 for row in label)
    assert {(row["precision"], row["batch"]) for row in rows if row["step"] == "model" and not row["compiled"]} == {
        (p, b) for p in ("fp32", "bf16") for b in (32, 64, 128, 256)
    }
    assert "SELF-TEST ON THE CPU (not GPU figures)" in (tmp_path / "out" / "gpu-check.txt").read_text()
