"""Whether bfloat16 is native on a device: on a CPU without bf16 units, autocast emulates it and runs slower.

>>> bf16_native("cuda:0") in (True, False)
True
"""

from __future__ import annotations

import torch


def bf16_native(device: str | torch.device) -> bool:
    """True where bf16 matmuls and convolutions run on the hardware: a CUDA GPU that supports bf16, or a
    CPU with AVX512-BF16 or AMX (oneDNN's fast paths). An AVX2-only CPU emulates them: on this project's
    AMD EPYC VM a gtsrb-cnn forward+backward at batch 256 took ~10x longer in bf16 than in fp32."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if dev.type == "cpu":
        probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
        if not all(probes):  # private probes: if torch drops them, do not guess
            return True
        return any(bool(probe()) for probe in probes if probe is not None)
    return True
