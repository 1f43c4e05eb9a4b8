"""Pre-packed UNet weights on CPUs: oneDNN re-lays out each weight once at load, not on every call.

In eager PyTorch, every bfloat16 or float32 convolution and linear layer on a CPU hands oneDNN a plain
weight, which oneDNN copies into its blocked layout (AMX / AVX-512 tiles) before it computes, on every
call: an SD-1.5 UNet re-reads and re-writes its 1.7 GB of bf16 weights once per step. Inductor's weight
freezing avoids that by packing weights ahead of time, but only after minutes of compiling per shape.
`prepack_weights` does the packing alone, with the same oneDNN operators inductor emits
(`mkldnn._reorder_*_weight` once, `mkldnn._*_pointwise` per call), and no compiling.

Measured on the 2-core AVX-512/AMX CPU this project is built on (SD-1.5 UNet, 8 rows, 256 px,
channels-last): 1.07–1.28× faster UNet calls in bfloat16, 1.07× in float32; whole jobs 1.38× against a
plain bf16 diffusers call, up from 1.06× without packing (`python -m bot bench`).

Pictures: packed layers round like oneDNN's own kernels for that layout, within bfloat16 rounding of
the plain call (the benchmark reports the pixel difference). Weights are packed without a batch-size
hint, so the layout never depends on which shapes happened to come first; measured bit for bit: a
row's result does not depend on its position in the batch or on the other rows, in either dtype, so
`bot.engine.batching`'s batched = solo guarantee holds.

The VAE is left as it is: packing gave its decoder no speed here (0.60 s either way per 256 px image).
The plain weights are dropped after packing, so the UNet takes no more memory than before.
"""

from __future__ import annotations

import logging
import platform

import torch
from torch import nn

log = logging.getLogger(__name__)


def can_prepack(dtype: torch.dtype, device: str) -> bool:
    """True when oneDNN can run packed layers of `dtype` on `device`: x86-64 CPUs only (where it was
    measured; ARM builds route oneDNN through other kernels), and bf16 only where the CPU computes it."""
    if device != "cpu" or platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    if not torch.backends.mkldnn.is_available():
        return False
    if dtype == torch.bfloat16:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return dtype == torch.float32


class PackedConv2d(nn.Module):
    """An `nn.Conv2d` whose weight is held in oneDNN's layout; same outputs, same shape attributes."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.kernel_size = conv.kernel_size
        self.stride, self.padding, self.dilation = list(conv.stride), list(conv.padding), list(conv.dilation)
        self.groups = conv.groups
        self.bias = conv.bias
        # A plain attribute, not a buffer: `Module.to()` cannot convert oneDNN's opaque tensors.
        self.packed_weight = torch.ops.mkldnn._reorder_convolution_weight(
            conv.weight.detach(), self.padding, self.stride, self.dilation, self.groups, None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._convolution_pointwise(
            x,
            self.packed_weight,
            self.bias,
            self.padding,
            self.stride,
            self.dilation,
            self.groups,
            "none",
            [],
            "",
        )


class PackedLinear(nn.Module):
    """An `nn.Linear` whose weight is held in oneDNN's layout; same outputs, same shape attributes."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.bias = linear.bias
        self.packed_weight = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.packed_weight, self.bias, "none", [], "")


def prepack_weights(model: nn.Module) -> int:
    """Replace `model`'s convolutions and linear layers by packed ones, in place; return how many.

    Convolutions with a padding mode other than zeros (none in SD UNets) keep their plain form.
    """
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Conv2d and _zero_padded(child):
                setattr(parent, name, PackedConv2d(child))
            elif type(child) is nn.Linear:
                setattr(parent, name, PackedLinear(child))
            else:
                continue
            replaced += 1
    log.info("Packed %d UNet layers for oneDNN", replaced)
    return replaced


def packed_weights(model: nn.Module) -> list[torch.Tensor]:
    """The packed weights inside `model`: memory that `parameters()` and `buffers()` do not list."""
    return [m.packed_weight for m in model.modules() if isinstance(m, (PackedConv2d, PackedLinear))]


def _zero_padded(conv: nn.Conv2d) -> bool:
    """oneDNN's packed convolution pads with zeros, by explicit amounts (not "same"/"valid")."""
    return conv.padding_mode == "zeros" and not isinstance(conv.padding, str)
