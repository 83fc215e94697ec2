"""Guidance rules: pure functions that combine the conditional and unconditional predictions.

Every rule has one signature, in diffusers' argument order:

    rule(pred_cond, pred_uncond, s, *, t=None, T=1000, step=None, state=None, **options) -> pred

`s` is a number or one value per row; `t` the rows' timesteps (of `T`), `step` the index of the sampling step,
and `state` a dict that lives along one sampling path (for rules with memory, such as APG's momentum).
A rule takes what it needs and ignores the rest. Convention (diffusers' `guidance_scale`): s = 0 is
unconditional, s = 1 conditional, s > 1 guided; Meng et al. and Ho & Salimans write w = s − 1.

A rule may carry `exact_at = {s: "cond" | "uncond"}`: scales at which it equals one prediction, so that
the sampler runs only that pass (EDM2's early return).
"""

import torch


def per_sample(s, like: torch.Tensor) -> torch.Tensor:
    """s (a number, or one value per row) shaped to broadcast over a batch like `like`."""
    s = torch.as_tensor(s, dtype=like.dtype, device=like.device)
    if s.ndim == 0:
        s = s.expand(like.shape[0])
    return s.reshape(-1, *([1] * (like.ndim - 1)))


def cfg(pred_cond: torch.Tensor, pred_uncond: torch.Tensor, s, **context) -> torch.Tensor:
    """Classifier-free guidance, Ho & Salimans (2022) eq. 6 with s = 1 + w: uncond + s·(cond − uncond)."""
    return pred_uncond + per_sample(s, pred_cond) * (pred_cond - pred_uncond)


cfg.exact_at = {0.0: "uncond", 1.0: "cond"}
