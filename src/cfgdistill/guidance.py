"""Guidance rules: how conditional and unconditional predictions are combined.

Convention (diffusers' `guidance_scale`): s = 0 is unconditional, s = 1 conditional, s > 1 guided.
Meng et al. and Ho & Salimans write w = s - 1.
"""

import math

import torch

from .errors import UserError


def check_guidance(s: float) -> float:
    """Return s as a float, refusing NaN and infinities."""
    s = float(s)
    if not math.isfinite(s):
        raise UserError(f"guidance scale must be a finite number, got {s}")
    return s


def per_sample(s, like: torch.Tensor) -> torch.Tensor:
    """s (a number, or one value per sample) shaped to broadcast over a batch like `like`."""
    s = torch.as_tensor(s, dtype=like.dtype, device=like.device)
    if s.ndim == 0:
        s = s.expand(like.shape[0])
    return s.reshape(-1, *([1] * (like.ndim - 1)))


def cfg(uncond: torch.Tensor, cond: torch.Tensor, s) -> torch.Tensor:
    """Classifier-free guidance, Ho & Salimans (2022) eq. 6 with s = 1 + w: uncond + s·(cond − uncond)."""
    return uncond + per_sample(s, cond) * (cond - uncond)


def cfg_prediction(model, x_t, t, cond, s, negative=None):
    """The teacher's guided prediction at (x_t, t), using as few network passes as s allows.

    `model(x_t, t, cond)` is any denoiser; a cond of None means unconditional. If the model has
    `null_condition(cond)`, cond and uncond go through one batched pass (k-diffusion's
    `cat([x, x])`); otherwise they are two calls. `negative` replaces the unconditional branch.
    """
    if cond is None and negative is None:
        return model(x_t, t, None)
    scalar = not torch.is_tensor(s) or s.ndim == 0
    if scalar and float(s) == 1:
        return model(x_t, t, cond)
    if scalar and float(s) == 0:
        return model(x_t, t, negative)
    if negative is None and hasattr(model, "null_condition"):
        negative = model.null_condition(cond)
    if negative is None or cond is None:
        return cfg(model(x_t, t, negative), model(x_t, t, cond), s)
    pred_cond, pred_uncond = paired_predictions(model, x_t, t, cond, negative)
    return cfg(pred_uncond, pred_cond, s)


def paired_predictions(model, x_t, t, cond, negative) -> tuple:
    """(model(x_t, t, cond), model(x_t, t, negative)) from one batched pass."""
    t = torch.as_tensor(t, device=x_t.device).expand(x_t.shape[0])
    return model(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([cond, negative])).chunk(2)
