"""Where the model runs: CUDA when there is one, the CPU otherwise, and whether bf16 is native there.

Training, evaluation, calibration and the service all ask here, so "auto" means the same everywhere.
"""

from __future__ import annotations

import torch


def pick_device(name: str) -> torch.device:
    """`auto` -> cuda when available, else cpu; asking for cuda without one is an error, not a silent cpu."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda requested, but no CUDA device is available")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, not {name!r}")
    return torch.device(name)


def bf16_supported(device: torch.device) -> bool:
    """True where bfloat16 convolutions run natively (AVX512-BF16/AMX on CPU, Ampere+ on CUDA)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return (
        device.type == "cpu" and torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    )
