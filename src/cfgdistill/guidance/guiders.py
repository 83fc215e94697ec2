"""Guidance rules beyond CFG, on the maths of `diffusers.guiders`, for sampling.

Each rule calls diffusers' own function for its maths where diffusers has one that takes a scale per row
(`rescale_noise_cfg`, `cfg_zero_star_scale`, `normalized_guidance`); the guider classes take one scale per
call and count steps, which a student, trained at many s per batch and shown only t, cannot use. Like diffusers,
they act on the network's own prediction (eps, v or velocity). Every rule keeps the project's convention:
s = 1 is the conditional prediction. `OPTIONS` holds each rule's options: default, and the check of a value.
"""

import torch
from diffusers.guiders.adaptive_projected_guidance import MomentumBuffer, normalized_guidance
from diffusers.guiders.classifier_free_zero_star_guidance import cfg_zero_star_scale
from diffusers.guiders.guider_utils import rescale_noise_cfg

from .rules import cfg, per_sample


def _scalar(s) -> float:
    """diffusers' guiders compare the scale with math.isclose: one number per call."""
    if torch.is_tensor(s):
        if s.numel() > 1 and not (s == s.flatten()[0]).all():
            raise ValueError("this guider takes one guidance scale per call, not one per row")
        s = s.flatten()[0]
    return float(s)


def rescale(pred_cond, pred_uncond, s, *, phi: float = 0.7, **context):
    """CFG, then its per-image standard deviation pulled back toward the conditional one (Lin et al. 2024):
    φ·cfg·std(cond)/std(cfg) + (1 − φ)·cfg. diffusers' `rescale_noise_cfg` on our CFG: its guider class takes
    one scale per call, and a student learns it at one scale per row."""
    return rescale_noise_cfg(cfg(pred_cond, pred_uncond, s), pred_cond, phi)


def interval(pred_cond, pred_uncond, s, *, start=0.0, stop=1.0, t=None, T=1000, **context):
    """CFG where the path's progress p = 1 − t/T lies in [start, stop), the conditional prediction elsewhere
    (Kynkäänniemi et al. 2024, who state the interval in noise levels). Written here on the timestep rather than
    with diffusers' `ClassifierFreeGuidance(start, stop)`, which counts sampling steps: a student sees t, never
    the step index. On a grid whose step i sits at t = T·(1 − i/N) the two agree."""
    guidance = cfg(pred_cond, pred_uncond, s)
    if t is None:
        return guidance
    progress = (T - torch.as_tensor(t, dtype=torch.float64, device=pred_cond.device).expand(pred_cond.shape[0])) / T
    inside = _inside(progress, start, stop)
    return torch.where(inside.view(-1, *[1] * (pred_cond.ndim - 1)), guidance, pred_cond)


def _inside(progress: torch.Tensor, start: float, stop: float) -> torch.Tensor:
    return (progress >= start - 1e-6) & (progress < stop - 1e-6)  # tolerance: a grid point exactly on an end


def _interval_is_conditional(t, T=1000, start=0.0, stop=1.0, **options) -> bool:
    """Whether every row at timestep t lies outside the interval, so that one conditional pass gives the rule's
    output (diffusers' guider skips the unconditional batch there too)."""
    progress = (T - torch.as_tensor(t, dtype=torch.float64)) / T
    return not bool(_inside(progress, start, stop).any())


interval.conditional_at = _interval_is_conditional


def cfg_zero_star(pred_cond, pred_uncond, s, *, zero_init_steps=1, step=None, **context):
    """CFG-Zero* (Fan et al. 2025): CFG with the unconditional prediction scaled by the optimal
    α* = ⟨cond, uncond⟩ / ‖uncond‖² (diffusers' `cfg_zero_star_scale`), and zero for the first
    `zero_init_steps` sampling steps (`step`: the path's step index, or one per row on teacher paths).
    Per-row s, as `rescale`."""
    alpha = cfg_zero_star_scale(pred_cond.flatten(1), pred_uncond.flatten(1)).view(-1, *[1] * (pred_cond.ndim - 1))
    guided = cfg(pred_cond, alpha * pred_uncond, s)
    if step is None:
        return guided
    zero = torch.as_tensor(step, device=guided.device).expand(guided.shape[0]) < zero_init_steps
    return torch.where(zero.view(-1, *[1] * (guided.ndim - 1)), torch.zeros_like(guided), guided)


def apg(pred_cond, pred_uncond, s, *, eta=1.0, norm_threshold=15.0, momentum=0.0, state=None, **context):
    """Adaptive projected guidance (Sadat et al. 2024): cond + (s − 1)·(Δ⊥ + η·Δ∥), where Δ = cond − uncond
    (with momentum, a running sum along the path) is clipped to `norm_threshold` and split along cond.
    diffusers' `normalized_guidance` in its original formulation with scale s − 1 is this form (its default
    one would not give the conditional prediction at s = 1); per-row s, as `rescale`. The momentum buffer
    lives in `state`, one per sampling path; on teacher paths, `state["momentum"]` holds each row's running
    sum, and is updated."""
    buffer = None
    if momentum:
        state = {} if state is None else state
        buffer = state.setdefault("apg_momentum", MomentumBuffer(momentum))
        if "momentum" in state:  # rows of separate paths, each with its own running sum
            buffer.running_average = state["momentum"]
    scale = per_sample(s, pred_cond) - 1
    guided = normalized_guidance(pred_cond, pred_uncond, scale, buffer, eta, norm_threshold, True)
    if buffer is not None and "momentum" in state:
        state["momentum"] = buffer.running_average
    return guided


def autoguidance(pred_cond, pred_guide, s, **context):
    """Autoguidance (Karras et al. 2024): guide + s·(cond − guide), the guide a weaker model's conditional
    prediction, which `guided` passes in the unconditional one's place (with the option `cfg_share`, its mix with
    the unconditional prediction: see autoguide.py). Written here: diffusers' AutoGuidance builds its weak model
    by skipping layers of the same network; the paper, and this rule, take another model."""
    return pred_guide + per_sample(s, pred_cond) * (pred_cond - pred_guide)


def _interval(low, high, closed_high=True):
    def problem(value):
        inside = low <= value <= high if closed_high else low <= value < high
        return None if inside else f"must be in [{low:g}, {high:g}{']' if closed_high else ')'}, got {value:g}"

    return problem


def _nonnegative(value):
    return None if value >= 0 else f"must be >= 0, got {value:g}"


def _whole(value):
    return None if value >= 0 and float(value).is_integer() else f"must be a whole number >= 0, got {value:g}"


OPTIONS = {  # rule -> option -> (default, problem(value) -> message or None)
    "cfg": {},
    "autoguidance": {"cfg_share": (0.0, _interval(0, 1))},
    "rescale": {"phi": (0.7, _interval(0, 1))},
    "interval": {"start": (0.0, _interval(0, 1)), "stop": (1.0, _interval(0, 1))},
    "cfg-zero-star": {"zero_init_steps": (1, _whole)},
    "apg": {
        "eta": (1.0, _nonnegative),
        "norm_threshold": (15.0, _nonnegative),
        "momentum": (0.0, _interval(-1, 1, False)),
    },
}

for _rule in (rescale, interval, apg, autoguidance):
    _rule.exact_at = {1.0: "cond"}  # each is the conditional prediction at s = 1
