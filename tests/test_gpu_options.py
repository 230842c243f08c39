"""`label` options of the GPU path refused up front: one Error line, exit 2, nothing written."""

from __future__ import annotations

import os
import subprocess

import pytest

from recap_label.demo import synth

from support import cmd, error_line, model_args, sub_env, tree_digest


@pytest.fixture
def dataset(cli, lerobot_home, tmp_path):
    spec = synth.simple_spec("v2.1", episodes=3, length=12, demos=1, png_cameras=2, video_cameras=0, size=16)
    synth.write_dataset(tmp_path / "ds", spec)
    cli("copy", tmp_path / "ds", "--json")
    return tmp_path / "ds_vlm_label"


def test_unknown_precision_and_tf32_without_cuda(cli, dataset):
    import torch

    before = tree_digest(dataset)
    r = cli("label", dataset, *model_args("--precision", "fp16"), code=2)
    assert (
        error_line(r)
        == "Error: --precision must be one of auto, tf32, bf16, fp32, got 'fp16'; see recap-label label --help"
    )
    if not torch.cuda.is_available():
        r = cli("label", dataset, *model_args("--device", "cpu", "--precision", "tf32"), code=2)
        assert error_line(r) == (
            "Error: --precision tf32 needs a CUDA device (TF32 is a tensor-core mode); "
            "use --precision bf16 or fp32 on the CPU"
        )
    assert tree_digest(dataset) == before


@pytest.mark.slow
def test_compile_without_a_working_compiler(dataset, tmp_path):
    env = sub_env()
    env.update(
        CXX=str(tmp_path / "no-such-c++"),
        TORCHINDUCTOR_CACHE_DIR=str(tmp_path / "inductor"),
        HF_LEROBOT_HOME=os.environ["HF_LEROBOT_HOME"],
    )
    before = tree_digest(dataset)
    r = subprocess.run(
        cmd("label", dataset, *model_args("--device", "cpu", "--compile")),
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert r.returncode == 2, r.stderr
    line = error_line(r)
    assert line.startswith("Error: --compile: torch.compile does not work on this cpu host (") and "no-such-c++" in line
    assert line.endswith("install a C++ compiler (CPU) or Triton (CUDA), or run without --compile")
    assert tree_digest(dataset) == before
