"""DEVICE / DTYPE resolution: auto picks the best the machine has; impossible choices are refused."""

from __future__ import annotations

import pytest
import torch

from bot.engine import device as device_module
from bot.engine.device import resolve_device, resolve_dtype
from bot.errors import SettingsError


def test_auto_device_prefers_cuda_then_mps_then_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """auto chooses CUDA when present, else MPS, else the CPU."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto") == "mps"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("cuda", "no CUDA GPU is available"),
        ("cuda:1", "no CUDA GPU is available"),
        ("cuda:x", "use auto, cpu, mps, cuda or cuda:N"),
        ("mps", "no usable Apple GPU"),
        ("tpu", "use auto, cpu, mps, cuda or cuda:N"),
    ],
)
def test_unavailable_devices_are_refused(name: str, says: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Asking for hardware the machine lacks names the problem and the choices."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(SettingsError, match=says):
        resolve_device(name)


@pytest.mark.parametrize(
    ("device", "native_bf16", "expected"),
    [
        ("cuda", False, torch.float16),
        ("cuda:0", True, torch.float16),
        ("mps", False, torch.float16),
        ("cpu", True, torch.bfloat16),
        ("cpu", False, torch.float32),
    ],
)
def test_auto_dtype(
    device: str, native_bf16: bool, expected: torch.dtype, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fp16 on GPUs, bf16 on CPUs that compute it natively, fp32 otherwise."""
    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: native_bf16)
    assert resolve_dtype("auto", device) is expected


def test_explicit_dtypes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Named dtypes are honoured; float16 on the CPU and unknown names are refused."""
    assert resolve_dtype("bfloat16", "cpu") is torch.bfloat16
    assert resolve_dtype("float32", "cuda") is torch.float32
    with pytest.raises(SettingsError, match="float16 is not usable on the CPU"):
        resolve_dtype("float16", "cpu")
    with pytest.raises(SettingsError, match="use auto, float32, float16, bfloat16"):
        resolve_dtype("half", "cpu")
