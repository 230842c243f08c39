"""`--precision`: which parts of the critic run in bf16, TF32 or strict fp32 (no torch import here).

pistar's JAX forward runs the SigLIP tower with dtype_mm=bf16 (patch embedding and position
add in fp32) and everything after it (projection, cross-attention, Gemma3 backbone, head) in
fp32. JAX leaves fp32 matmul precision at DEFAULT, which on an Ampere-or-newer NVIDIA GPU
computes fp32 dot products and convolutions with TF32 tensor cores (JAX docs, "Matmul
precision": "By default, JAX leans toward speed: float32 dot products may be computed with
reduced-precision arithmetic internally (bfloat16 on TPU, TF32 on recent GPUs)"). So the
faithful GPU mode is `tf32`; `bf16` keeps the fp32 parts strict, `fp32` is strict everywhere
(the CPU reference; pistar's fp32 CPU forward agrees with it to 2.4e-7 in V at full size).
"""

from __future__ import annotations

from dataclasses import dataclass

from recap_label.config import PRECISIONS  # noqa: F401 (the names precision modes go by, one place)


@dataclass(frozen=True)
class Precision:
    name: str
    siglip_bf16: bool  # SigLIP encoder matmuls/activations in bf16 (LayerNorm statistics fp32)
    tf32: bool  # fp32 matmuls and convolutions on TF32 tensor cores (CUDA only)


# |V - V_cpu_fp32| the GPU check accepts per precision (V lies in [-1, 0]); see README "GPU".
# bf16 SigLIP alone moved V by up to 6.1e-3 against pistar's own bf16; TF32 adds ~1e-3 relative
# rounding per matmul on top. Strict fp32 on the GPU differs only in summation order.
TOLERANCE = {"fp32": 1e-4, "bf16": 2e-2, "tf32": 3e-2}


def resolve_precision(name: str, device_type: str) -> Precision:
    """`auto` is tf32 on CUDA (pistar's GPU numerics) and fp32 on the CPU; tf32 needs CUDA."""
    from recap_label.errors import DeviceError

    if name not in PRECISIONS:
        raise DeviceError(f"--precision must be one of {', '.join(PRECISIONS)}, got {name!r}")
    if name == "auto":
        name = "tf32" if device_type == "cuda" else "fp32"
    if name == "tf32" and device_type != "cuda":
        raise DeviceError(
            "--precision tf32 needs a CUDA device (TF32 is a tensor-core mode); use --precision bf16 or fp32 on the CPU"
        )
    return Precision(name, siglip_bf16=name in ("tf32", "bf16"), tf32=name == "tf32")
