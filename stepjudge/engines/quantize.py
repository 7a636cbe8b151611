"""int8 weights for engines that only sample or score (never for training).

Why PyTorch's dynamic quantization (``torch.ao.quantization.quantize_dynamic`` on every ``nn.Linear``,
qint8 weights, activations quantized per call): it is the one maintained int8 path installed here
(torchao, its successor, is not in the lock set), it runs on any x86 CPU through fbgemm/oneDNN, and
batch-1 decode of a 135M model is bound by reading the weights, which int8 cuts by 4x. The other
candidate measured, weight-only int8 with ``torch._weight_int8pack_mm`` (what torchao calls on CPU), took
~108 ms against fp32's 2.5 ms at 64 rows on a 576x1536 layer (one noisy run; its CPU kernel is not a
GEMM), so it is not offered.
See ``docs/performance.md`` for the measurements and the quality cost, which is not small on SmolLM2-135M.

Tied heads: SmolLM2 ties ``lm_head`` to the input embeddings. Quantizing replaces ``lm_head`` by an int8
copy and leaves the embedding table in fp32; the tie is gone, which is harmless because the weights never
change again (this is inference only).
"""

from __future__ import annotations

import warnings
from typing import Literal

import torch

__all__ = ["QUANTIZE_MODES", "Quantize", "quantize_for_inference"]

Quantize = Literal["none", "int8"]
QUANTIZE_MODES: tuple[str, ...] = ("none", "int8")


def quantize_for_inference(model: torch.nn.Module, mode: str, *, inplace: bool = False) -> torch.nn.Module:
    """``model`` with its weights in ``mode`` (``none`` returns it as is).

    Refused for a model in training mode (a trainer's live policy: int8 modules have no gradients, and a
    quantized copy would go stale after the first update) and off the CPU (the int8 kernels are CPU
    kernels). ``inplace=False`` leaves the caller's model untouched (a quantized deep copy is returned).
    """
    if mode == "none":
        return model
    if mode not in QUANTIZE_MODES:
        raise ValueError(f"unknown quantize mode {mode!r}; choose one of {', '.join(QUANTIZE_MODES)}")
    if model.training:
        raise ValueError("quantize='int8' is for inference only: this model is in training mode (a trainer's "
                         "live policy?); sample from a frozen copy in eval mode, or use quantize='none'")
    devices = {p.device.type for p in model.parameters()}
    if devices - {"cpu"}:
        raise ValueError(f"quantize='int8' runs on CPU only (PyTorch's dynamic int8 kernels); the model is on "
                         f"{', '.join(sorted(devices))}")
    dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
    if dtypes - {torch.float32}:
        raise ValueError(f"quantize='int8' starts from float32 weights (engine.dtype float32); got "
                         f"{', '.join(sorted(map(str, dtypes)))}")
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        # torch.ao announces its move to torchao, and quantized tensor constructors their deprecation; both
        # still work in the pinned torch, and the warnings would repeat on every engine built.
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.ao")
        warnings.filterwarnings("ignore", message=r".*quantize_per_tensor.*", category=UserWarning)
        warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization is deprecated.*")
        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=inplace)
