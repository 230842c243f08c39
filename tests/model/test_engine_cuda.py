"""The CUDA path (run by `make gpu-check` on a GPU host; skipped elsewhere): values against the CPU
strict-fp32 reference per precision, the compiled CUDA-graph path, and the measured OOM hint."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recap_label.lerobot.dataset import DatasetFiles
from recap_label.model.precision import TOLERANCE

from test_engine_batches import BASE, WRIST, engine as cpu_engine, odd_dataset, run  # noqa: F401  (fixture)
from support import TINY_CHECKPOINT, TINY_TOKENIZER

pytestmark = pytest.mark.cuda


def cuda_engine(tmp_path, batch: int, precision: str, compile_model: bool = False):
    from recap_label.values.engine import Engine

    return Engine(
        step_dir=TINY_CHECKPOINT,
        use_ema=True,
        tokenizer_path=TINY_TOKENIZER,
        model_cache=tmp_path / "models",
        device="cuda",
        batch_size=batch,
        num_workers=0,
        precision=precision,
        compile_model=compile_model,
        quiet=True,
    )


@pytest.mark.parametrize("precision", ["fp32", "bf16", "tf32"])
def test_cuda_values_agree_with_the_cpu_reference(odd_dataset, tmp_path, precision):  # noqa: F811
    ds = DatasetFiles.open(odd_dataset)
    episodes = sorted(ds.episodes)
    reference = run(cpu_engine(tmp_path, batch=8), ds, episodes)
    eng = cuda_engine(tmp_path, batch=8, precision=precision)
    got = run(eng, ds, episodes)
    assert eng.device_letterbox and eng.precision == precision
    for ep in episodes:
        np.testing.assert_allclose(got[ep].value, reference[ep].value, rtol=0, atol=TOLERANCE[precision])


def test_compiled_cuda_graphs_give_the_eager_values(odd_dataset, tmp_path):  # noqa: F811
    ds = DatasetFiles.open(odd_dataset)
    episodes = sorted(ds.episodes)
    eager = run(cuda_engine(tmp_path, batch=8, precision="fp32"), ds, episodes)
    compiled = run(cuda_engine(tmp_path, batch=8, precision="fp32", compile_model=True), ds, episodes)
    for ep in episodes:
        np.testing.assert_allclose(compiled[ep].value, eager[ep].value, rtol=0, atol=TOLERANCE["fp32"])


def test_out_of_memory_names_a_batch_size_that_fits(tmp_path):
    from recap_label.values.engine import fitting_batch_size

    eng = cuda_engine(tmp_path, batch=8, precision="fp32")
    model, config, device = eng.model, eng.model_config, eng.device
    mask = torch.ones(2, dtype=torch.bool, device=device)
    free = torch.cuda.mem_get_info(device)[0]
    filler = torch.empty(max(0, free - 2 * 2**30), dtype=torch.uint8, device=device)  # leave ~2 GiB
    try:
        fits = fitting_batch_size(model, device, mask, config.image_size, config, False, below=10**8)
        assert 1 < fits < 10**8

        def forward(b):
            with torch.inference_mode():
                x = torch.zeros(b, 2, 3, config.image_size, config.image_size, device=device)
                tokens = torch.ones(b, config.max_token_len, dtype=torch.long, device=device)
                model(x, mask.expand(b, -1), tokens, tokens != 0)
            torch.cuda.synchronize(device)

        forward(fits)
        with pytest.raises(torch.cuda.OutOfMemoryError):
            forward(fits * 2)
    finally:
        del filler
        torch.cuda.empty_cache()
