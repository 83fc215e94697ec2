"""Networks: anything called as `model(x_t, t, cond, s=None)`, with a null condition.

`Network` is the protocol the samplers, guidance rules and objectives rely on. `unet.Denoiser` (our UNet)
and `flux.FluxDenoiser` (diffusers' FluxTransformer2DModel) implement it. A network saves as one or more
diffusers folders (`parts`) and makes its own student (`with_guidance`).
"""

from typing import Protocol, runtime_checkable

import torch

from ..config import ARCHS
from .flux import FluxConditioner, FluxDenoiser
from .unet import Denoiser, GuidanceEmbedding

# A checkpoint's `denoiser/config.json` names its class; this maps it to the network it belongs to.
CLASSES = {"Denoiser": Denoiser, "FluxConditioner": FluxDenoiser}


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


def make_student(teacher, guidance_range: tuple, negatives: str | None = None, gate: str = "none"):
    """The teacher's network with a zero-initialised guidance input (and, with `negatives` "additive" or
    "joint", a negative input; with `gate` "w", the guidance input times s − 1); all its other weights are the
    teacher's."""
    return teacher.with_guidance(guidance_range, negatives is not None, gate, joint=negatives == "joint")


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
