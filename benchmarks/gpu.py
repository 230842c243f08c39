"""What the benchmark and the GPU check both measure with: the bf16 peak of a device, the GPU-busy
sampler, and the full-size critic with random weights.

Imports only the standard library at module level: `gpu_check` loads it before it has checked
that torch is there.
"""

from __future__ import annotations

import shutil
import subprocess

# Dense bf16 tensor-core peaks (TFLOP/s, no sparsity) by device-name substring, first match wins.
BF16_PEAK_TFLOPS = (
    ("H200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),
    ("GH200", 989.0),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("A800", 312.0),
    ("L40S", 362.0),
    ("L40", 181.0),
    ("L4", 121.0),
    ("A10G", 70.0),
    ("A10", 125.0),
    ("RTX 4090", 165.0),
    ("RTX 3090", 71.0),
    ("A6000", 155.0),
    ("V100", 125.0),
)


def bf16_peak(device_name: str) -> float | None:
    for key, peak in BF16_PEAK_TFLOPS:
        if key.lower() in device_name.lower():
            return peak
    return None


def random_model(config, device, precision: str):
    """The critic of `config` with random weights (pistar's names and shapes) on `device`, in eval mode."""
    import torch

    from recap_label.demo.tiny_model import random_flat_params
    from recap_label.model.network import ValueModel

    flat = random_flat_params(config)
    model = ValueModel.from_flat_params(
        flat, siglip_dtype=torch.bfloat16 if precision in ("bf16", "tf32") else torch.float32
    )
    del flat
    return model.to(device).eval()


def model_inputs(config, batch: int, cameras: int, device, seed: int = 0):
    """Random uint8 images, an all-true camera mask and 12 random task tokens per frame, on `device`."""
    import torch

    g = torch.Generator().manual_seed(seed)
    images = torch.randint(
        0, 256, (batch, cameras, config.image_size, config.image_size, 3), dtype=torch.uint8, generator=g
    )
    tokens = torch.zeros(batch, config.max_token_len, dtype=torch.long)
    tokens[:, :12] = torch.randint(1, config.vocab_size, (batch, 12), generator=g)
    return images.to(device), torch.ones(batch, cameras, dtype=torch.bool, device=device), tokens.to(device)


class GpuBusy:
    """GPU utilization sampled every 100 ms: torch.cuda.utilization (pynvml), else nvidia-smi.
    `device`: the CUDA device to watch (default: the current one); a CPU device samples nothing."""

    def __init__(self, device=None):
        import threading

        self.samples: list[float] = []
        self._stop = threading.Event()
        self._proc = None
        self._thread = None
        if device is not None and getattr(device, "type", "cuda") != "cuda":
            return
        self._index = 0 if device is None or getattr(device, "index", None) is None else device.index
        try:
            import torch

            torch.cuda.utilization(self._index)
            self._thread = threading.Thread(target=self._nvml, daemon=True)
        except Exception:
            if shutil.which("nvidia-smi"):
                self._thread = threading.Thread(target=self._smi, daemon=True)

    def _nvml(self):
        import torch

        while not self._stop.wait(0.1):
            try:
                self.samples.append(float(torch.cuda.utilization(self._index)))
            except Exception:
                return

    def _smi(self):
        self._proc = subprocess.Popen(
            [
                "nvidia-smi",
                "--query-gpu=utilization.gpu",
                "--format=csv,noheader,nounits",
                "-i",
                str(self._index),
                "-lms",
                "100",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for line in self._proc.stdout:
            if self._stop.is_set():
                break
            try:
                self.samples.append(float(line.strip()))
            except ValueError:
                pass

    def __enter__(self):
        if self._thread:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._proc is not None:
            self._proc.terminate()
        if self._thread:
            self._thread.join(timeout=2)

    @property
    def mean(self) -> float | None:
        return sum(self.samples) / len(self.samples) if self.samples else None
