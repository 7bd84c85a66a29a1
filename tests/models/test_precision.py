"""`bf16_native`: bf16 counts as native on a CPU only with AVX512-BF16 or AMX; the CLI warns otherwise."""

from __future__ import annotations

import pytest
import torch

from patchscope.cli.common import warn_bf16 as _warn_bf16
from patchscope.models.precision import bf16_native


@pytest.mark.parametrize(
    ("avx512_bf16", "amx", "native"), [(False, False, False), (True, False, True), (False, True, True)]
)
def test_cpu_bf16_is_native_only_with_bf16_units(monkeypatch, capsys, avx512_bf16, amx, native):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert bf16_native("cpu") is native
    _warn_bf16("cpu")
    err = capsys.readouterr().err
    assert (err.count("\n") == 1 and "emulated" in err) if not native else err == ""


def test_cuda_without_a_gpu_is_not_native(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert bf16_native("cuda") is False


def test_without_torchs_cpu_probes_it_does_not_guess(monkeypatch):
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")
    assert bf16_native("cpu") is True
