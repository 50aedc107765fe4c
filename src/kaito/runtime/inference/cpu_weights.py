"""float16 weights with float32 arithmetic on CPU: fbgemm's packed fp16 GEMM behind every ``nn.Linear``.

Decoding is bound by reading the weights: every step streams all of them from memory to produce one token per
sequence. On a CPU without native bf16 instructions (AVX2 only, e.g. the AMD EPYC development machine) torch's
bf16 matmuls convert to fp32 and measured 2.7-3.2x *slower* than fp32 at batch 16-32, so half-size weights need
another kernel.
fbgemm (bundled with torch's x86 builds) has one: weights stored as float16 in its packed layout, converted to fp32
in registers (F16C), fp32 accumulation, fp32 activations. Measured on that machine, one thread, the 210 linear
layers of SmolLM2-135M with weights streamed from memory: 28 vs 51 ms per decode step at batch 1, 67 vs 133 ms at
batch 16; the 49,152 x 576 LM head 24 vs 57 ms at batch 16. Long prefills are compute bound and run at the same
speed either way (3.2 s for 1,008 tokens).

Precision: each weight is rounded to float16 once (relative error at most 2**-11, about 4.9e-4); activations,
accumulation, norms, attention and the KV cache stay float32. That is finer than bfloat16 everywhere (2**-8 for
weights *and* activations), the precision GPU servers (vLLM, upstream Kaito) run by default. ``--dtype float32``
keeps every weight in float32 for bit-level comparisons with ``transformers``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def fp16_weights_supported() -> bool:
    """True when this torch build and CPU can run fbgemm's fp16-weight GEMM (x86 with AVX2 or AVX-512)."""
    ops = getattr(torch.ops, "quantized", None)
    return (
        "fbgemm" in torch.backends.quantized.supported_engines
        and torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")
        and ops is not None
        and hasattr(ops, "linear_prepack_fp16")
        and hasattr(ops, "linear_dynamic_fp16")
    )


class Fp16WeightLinear(nn.Linear):
    """An ``nn.Linear`` whose inference forward runs on a packed float16 copy of its weight (float32 in and out).

    The float32 ``weight`` parameter stays (peft reads its shape and dtype, tied embeddings share it); the packed
    copy adds half its size. Anything but a float32 CPU input without autograd falls back to ``nn.Linear``.
    """

    packed: Any
    """fbgemm's packed fp16 weight and bias (``torch.ops.quantized.linear_prepack_fp16``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[..., in_features]`` float32 → ``[..., out_features]`` float32."""
        if x.dtype != torch.float32 or x.device.type != "cpu" or (torch.is_grad_enabled() and x.requires_grad):
            return super().forward(x)
        out: torch.Tensor = torch.ops.quantized.linear_dynamic_fp16(x, self.packed)
        return out


def pack_fp16_weights(model: nn.Module) -> int:
    """Turn every float32 CPU ``nn.Linear`` of ``model`` into a :class:`Fp16WeightLinear`, in place.

    Call it before peft attaches adapters: peft then wraps the packed layers as base layers and its own LoRA
    matrices stay plain float32 ``nn.Linear``. Returns the number of layers packed.

    Raises:
        RuntimeError: :func:`fp16_weights_supported` is False (fbgemm refuses the CPU).
    """
    if not fp16_weights_supported():
        raise RuntimeError("fbgemm's fp16 GEMM needs an x86 CPU with AVX2; use --dtype float32")
    count = 0
    for module in list(model.modules()):
        if type(module) is not nn.Linear:
            continue
        weight = module.weight
        if weight.device.type != "cpu" or weight.dtype != torch.float32:
            continue
        bias = module.bias.detach() if module.bias is not None else None
        module.packed = torch.ops.quantized.linear_prepack_fp16(weight.detach(), bias)
        module.__class__ = Fp16WeightLinear
        count += 1
    return count
