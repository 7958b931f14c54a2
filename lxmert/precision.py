"""Which floating-point precision the model computes in: bf16 where the hardware runs it fast, fp32 elsewhere.

bf16 here always means *autocast*: weights, optimiser state and losses stay float32, and only the matrix products
(and the ops autocast lists with them) run in bfloat16. A CUDA GPU runs bf16 natively; a CPU does when oneDNN
(``torch.backends.mkldnn``) is built in and the processor has native bf16 instructions (AVX512-BF16 or AMX-BF16).
Without those, PyTorch would emulate bf16 on a CPU, slower than fp32, so ``auto`` picks fp32 there.

    precision = resolve_precision("auto", device)      # "bf16" or "fp32"
    with autocast(precision, device):
        output = model(**inputs)
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch

PRECISIONS = ("auto", "bf16", "fp32")
# Below this hidden size ``auto`` keeps fp32: autocast's casts cost more than the small bf16 products save. Measured
# on a 2-core AVX512-BF16 CPU, one example forward and backward of a 9/5/5-layer model, fp32 time / bf16 time:
# 0.67x at hidden 128, 1.01x at 256, 1.21x at 384, 2.35x at 768 (benchmarks.analysis_speed --preset base).
BF16_MIN_HIDDEN = 384
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo names of native bf16 instructions


def cpu_has_bf16() -> bool:
    """Whether this CPU runs bf16 matrix products natively through oneDNN."""
    if not torch.backends.mkldnn.is_available():
        return False
    # oneDNN's own check (AVX512-BF16 / AMX); a private op, so fall back to the kernel's CPU flags without it.
    probe = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    if probe is not None:
        return bool(probe())
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read().split()
    except OSError:
        return False
    return any(flag in flags for flag in CPU_BF16_FLAGS)


def bf16_supported(device: str | torch.device) -> bool:
    """Whether bf16 autocast runs natively on ``device`` (a CUDA GPU with bf16, or a CPU with bf16 instructions)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return cpu_has_bf16()
    return False


# Reduced precisions autocast can run, by name; fp16 only on a GPU, and only where its drift was measured (the
# detector's caffe network, see benchmarks.extraction_drift).
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(requested: str, device: str | torch.device, hidden_size: int | None = None) -> str:
    """``"bf16"`` or ``"fp32"`` for ``requested`` (``auto``, ``bf16`` or ``fp32``) on ``device``.

    ``auto`` is bf16 where :func:`bf16_supported` and the model (of ``hidden_size``, when given) is large enough
    for bf16 to pay (:data:`BF16_MIN_HIDDEN`), else fp32. ``bf16`` is honoured even where bf16 would be emulated
    (slow, but the numbers are those of bf16), so a run can be checked on any machine.

    Raises:
        ValueError: ``requested`` is not one of :data:`PRECISIONS`.
    """
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {requested!r}")
    if requested == "auto":
        large_enough = hidden_size is None or hidden_size >= BF16_MIN_HIDDEN
        return "bf16" if large_enough and bf16_supported(device) else "fp32"
    return requested


def autocast(precision: str, device: str | torch.device) -> AbstractContextManager:
    """The autocast context of a resolved ``precision`` on ``device``: bf16 or fp16 autocast, or nothing for fp32.

    Raises:
        ValueError: ``precision`` is not ``bf16``, ``fp16`` or ``fp32`` (resolve ``auto`` first), or it is fp16
            on a CPU (which has no fp16 arithmetic).
    """
    if precision == "fp32":
        return nullcontext()
    if precision not in AUTOCAST_DTYPES:
        raise ValueError(
            f"autocast takes a resolved precision, one of {('fp32', *AUTOCAST_DTYPES)}, got {precision!r}"
        )
    device_type = torch.device(device).type
    if precision == "fp16" and device_type != "cuda":
        raise ValueError("fp16 autocast needs a GPU")
    return torch.autocast(device_type, dtype=AUTOCAST_DTYPES[precision])


def describe(precision: str, device: str | torch.device) -> str:
    """One line saying what runs in which precision and why, e.g. for the app's sidebar."""
    device = torch.device(device)
    if precision == "fp32":
        reason = "" if bf16_supported(device) else f" (no native bf16 on this {device.type.upper()})"
        return f"fp32{reason}"
    where = device.type.upper()
    if not bf16_supported(device):
        where += " (emulated, slower than fp32)"
    return f"bf16 autocast on {where}, fp32 weights"


__all__ = [
    "AUTOCAST_DTYPES",
    "BF16_MIN_HIDDEN",
    "PRECISIONS",
    "autocast",
    "bf16_supported",
    "cpu_has_bf16",
    "describe",
    "resolve_precision",
]
