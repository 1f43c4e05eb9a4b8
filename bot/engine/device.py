"""Turning DEVICE=auto / DTYPE=auto into a real torch device and dtype.

auto device: the first CUDA GPU, else Apple's MPS, else the CPU.
auto dtype: float16 on CUDA and MPS (half the memory, the speed tensor cores are built for); bfloat16 on a
CPU whose instruction set computes it natively (AVX512-BF16 or AMX, e.g. Xeon Sapphire Rapids and later),
where it is faster than float32; float32 on any other CPU, where bfloat16 would only be emulated.
"""

from __future__ import annotations

import torch

from bot.errors import SettingsError

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def resolve_device(name: str) -> str:
    """`auto`, `cpu`, `mps`, `cuda` or `cuda:N` → a device string torch accepts, checked to exist."""
    name = name.strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if name == "cpu":
        return name
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise SettingsError("DEVICE=mps but this machine has no usable Apple GPU; use auto or cpu.")
        return name
    if name == "cuda" or name.startswith("cuda:"):
        suffix = name.partition(":")[2]
        if name != "cuda" and not suffix.isdigit():
            raise SettingsError(f"DEVICE={name!r}: use auto, cpu, mps, cuda or cuda:N.")
        index = int(suffix or 0)
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise SettingsError(f"DEVICE={name} but no CUDA GPU is available; use auto or cpu.")
        if not 0 <= index < count:
            raise SettingsError(f"DEVICE={name}: this machine has CUDA devices cuda:0 to cuda:{count - 1}.")
        return name
    raise SettingsError(f"DEVICE={name!r}: use auto, cpu, mps, cuda or cuda:N.")


def resolve_dtype(name: str, device: str) -> torch.dtype:
    """`auto` or an explicit dtype name → a torch dtype that works on `device`."""
    name = name.strip().lower()
    if name == "auto":
        if device.startswith("cuda") or device == "mps":
            return torch.float16
        return torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    if name not in DTYPES:
        raise SettingsError(f"DTYPE={name!r}: use auto, {', '.join(DTYPES)}.")
    if name == "float16" and device == "cpu":
        raise SettingsError("DTYPE=float16 is not usable on the CPU; use bfloat16 or float32 (or auto).")
    return DTYPES[name]


def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bfloat16 natively (AVX512-BF16 or AMX), not by emulation.

    `torch.backends.cpu.get_cpu_capability()` only reports the vector width ("AVX512"), so ask torch's
    feature probes, which read CPUID.
    """
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")
