"""Networks: anything called as `model(x_t, t, cond, s=None)`, with a null condition.

`Network` is the protocol the samplers, guidance rules and objectives rely on. `unet.Denoiser` implements
it; adapters for diffusers' `UNet2DConditionModel` and transformers go beside it.
"""

from typing import Protocol, runtime_checkable

import torch

from .unet import Denoiser, GuidanceEmbedding, make_student


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


def takes_guidance(model) -> bool:
    """Whether a network (or any callable) is a guidance-distilled student that takes s as an input."""
    return bool(getattr(model, "takes_guidance", False))


__all__ = ["Denoiser", "device_of", "GuidanceEmbedding", "Network", "make_student", "takes_guidance"]
