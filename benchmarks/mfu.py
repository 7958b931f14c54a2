"""Model FLOPs utilisation: the FLOPs a step needs, counted by PyTorch, over the device's peak.

A step's FLOPs are counted once with ``torch.utils.flop_counter.FlopCounterMode`` (matrix products and attention,
forward and backward: the work that runs on tensor cores; element-wise ops are not counted, as in the usual MFU).
The peaks are the vendors' dense bf16 tensor-core figures (no sparsity), matched by the device name's substring,
most specific first.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

# (name substring, dense bf16 peak in FLOP/s), from NVIDIA's datasheets.
PEAK_BF16_FLOPS: tuple[tuple[str, float], ...] = (
    ("GH200", 989e12),
    ("H200", 989e12),
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),  # SXM
    ("H800", 989e12),
    ("A100", 312e12),
    ("A800", 312e12),
    ("L40S", 362e12),
    ("L40", 181e12),
    ("L4", 121e12),
    ("A10", 125e12),
    ("RTX 4090", 165e12),
    ("RTX 3090", 71e12),
)


def peak_flops(device_name: str) -> float | None:
    """The dense bf16 peak of the named device in FLOP/s, or None when the table does not know it."""
    for substring, peak in PEAK_BF16_FLOPS:
        if substring in device_name:
            return peak
    return None


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call of ``fn`` (it runs once, untimed)."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


def mfu(flops_per_step: int, seconds_per_step: float, device: torch.device) -> float | None:
    """Achieved FLOP/s over the device's bf16 peak; None on a CPU or an unknown GPU."""
    if device.type != "cuda":
        return None
    peak = peak_flops(torch.cuda.get_device_name(device))
    return None if peak is None else flops_per_step / seconds_per_step / peak


__all__ = ["PEAK_BF16_FLOPS", "count_flops", "mfu", "peak_flops"]
