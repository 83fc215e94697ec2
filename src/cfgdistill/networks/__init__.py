"""Networks: anything called as `model(x_t, t, cond, s=None)`, with a null condition.

`Network` is the protocol the samplers, guidance rules and objectives rely on. `unet.Denoiser` (our UNet)
and `flux.FluxDenoiser` (diffusers' FluxTransformer2DModel) implement it. A network saves as one or more
diffusers folders (`parts`) and makes its own student (`with_guidance`).
"""

from typing import Protocol, runtime_checkable

import torch

from ..config import ARCHS
from .unet import Denoiser, GuidanceEmbedding

# A checkpoint's `denoiser/config.json` names its class; this names the network it belongs to. flux.py loads
# on first use: importing diffusers' FluxTransformer2DModel imports all of its transformers (about 1.2 s).
CLASSES = {"Denoiser": "Denoiser", "FluxConditioner": "FluxDenoiser"}
LAZY = {"FluxConditioner", "FluxDenoiser"}


def __getattr__(name):
    if name in LAZY:
        from . import flux

        return getattr(flux, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@runtime_checkable
class Network(Protocol):
    """A denoiser network. A student (`takes_guidance`) also takes s and costs one pass at any s."""

    takes_guidance: bool
    sample_shape: tuple

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond=None, s=None) -> torch.Tensor: ...

    def null_condition(self, cond: torch.Tensor) -> torch.Tensor: ...


def device_of(model, default="cpu") -> torch.device:
    """Where a network's weights live; `default` for a callable without any."""
    weight = next(model.parameters(), None) if isinstance(model, torch.nn.Module) else None
    return weight.device if weight is not None else torch.device(default)


def make_student(teacher, guidance_range: tuple, negatives: bool = False):
    """The teacher's network with a zero-initialised guidance input (and, with `negatives`, a negative input);
    all its other weights are the teacher's."""
    return teacher.with_guidance(guidance_range, negatives)


def takes_negative(model) -> bool:
    """Whether a student takes a negative condition in its one pass (`distill --negatives`)."""
    return bool(getattr(model, "takes_negative", False))


def takes_guidance(model) -> bool:
    """Whether a network (or any callable) is a guidance-distilled student that takes s as an input."""
    return bool(getattr(model, "takes_guidance", False))


__all__ = [
    "ARCHS",
    "CLASSES",
    "Denoiser",
    "FluxConditioner",
    "FluxDenoiser",
    "GuidanceEmbedding",
    "Network",
    "device_of",
    "make_student",
    "takes_guidance",
    "takes_negative",
]
