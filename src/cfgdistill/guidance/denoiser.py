"""The guided denoiser: one closure turns (model, rule, s, negative) into `denoiser(x_t, t, cond) -> pred`.

A teacher runs its conditional and unconditional (or negative) branches in one batched pass
(k-diffusion's `cat([x, x])`) and the rule combines them; a guidance-distilled student runs once, with s.
"""

import warnings

import torch

from ..config.kinds import FINITE
from ..errors import ExtrapolationWarning, UserError
from ..networks import device_of, takes_guidance, takes_negative
from . import get_rule
from .autoguide import GuidedPair


def check_guidance(s: float) -> float:
    """Return s as a float, refusing NaN and infinities."""
    s = float(s)
    if FINITE.problem(s):
        raise UserError(f"guidance scale must be a finite number, got {s}")
    return s


@torch.no_grad()
def predict_pair(model, x_t, t, cond, negative=None) -> tuple:
    """(model(x_t, t, cond), model(x_t, t, negative)), by default negative = the null condition.

    One batched pass when the model has `null_condition` (or a negative is given) and cond is known;
    otherwise two calls, the unconditional first. Runs where the model lives, returns where x_t is.
    """
    here = x_t.device
    if negative is None and hasattr(model, "pair"):  # a model that pairs itself: autoguidance
        return tuple(p.to(here) for p in model.pair(x_t, torch.as_tensor(t).expand(x_t.shape[0]), cond))
    device = device_of(model, here)
    t = torch.as_tensor(t, device=device).expand(x_t.shape[0])
    x_t, cond, negative = (None if v is None else v.to(device) for v in (x_t, cond, negative))
    if negative is None and cond is not None and hasattr(model, "null_condition"):
        negative = model.null_condition(cond)
    if negative is None or cond is None:
        pred_uncond = model(x_t, t, negative)
        return model(x_t, t, cond).to(here), pred_uncond.to(here)
    pred_cond, pred_uncond = model(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([cond, negative])).chunk(2)
    return pred_cond.to(here), pred_uncond.to(here)


def guided(model, s, rule: str = "cfg", negative=None, steps: int | None = None, guide=None, **options):
    """A denoiser (x_t, t, cond) -> the prediction at guidance s, for one sampling path (or batch of paths).

    Rules that depend on the step index or keep state along the path get both from the closure, and the
    path's number of steps (`steps`) where the sampler gives it. With a `guide` model (autoguidance) its
    conditional prediction takes the unconditional one's place.
    """
    s = check_guidance(s) if not torch.is_tensor(s) else s
    if takes_guidance(model):
        return student_denoiser(model, s, negative)
    if guide is not None and negative is not None:
        raise UserError("autoguidance guides by a weaker model, not by a negative prompt: leave out the negative")
    model = GuidedPair(model, guide, options.get("cfg_share", 0.0)) if guide is not None else model
    combine, state = get_rule(rule), {"step": 0}
    conditional_at = getattr(combine, "conditional_at", None)  # where the rule needs the conditional pass alone
    exact = getattr(combine, "exact_at", {}).get(float(s)) if not torch.is_tensor(s) else None

    def denoiser(x_t, t, cond):
        if cond is None and negative is None:
            return model(x_t, t, None)
        if exact == "cond" or (conditional_at and conditional_at(t, **options)):
            state["step"] += 1
            return model(x_t, t, cond)
        if exact == "uncond":
            return model(x_t, t, negative)
        pred_cond, pred_uncond = predict_pair(model, x_t, t, cond, negative)
        pred = combine(pred_cond, pred_uncond, s, t=t, step=state["step"], steps=steps, state=state, **options)
        state["step"] += 1
        return pred

    return denoiser


def check_request(model, s, negative=None):
    """Refuse, before any sampling, what no denoiser can do: a non-finite s, or a negative for a student not
    distilled with negatives."""
    if not torch.is_tensor(s):
        check_guidance(s)
    if negative is not None and takes_guidance(model) and not takes_negative(model):
        raise UserError(
            "this student was distilled without negatives, so it takes no negative condition "
            "(distill one with --negatives P)"
        )


def student_denoiser(model, s, negative=None):
    """One pass per step at any s (and with its negative, for a student distilled with negatives); s outside the
    distilled range is allowed, with a warning."""
    check_request(model, s, negative)
    low, high = model.config.guidance_range
    if not torch.is_tensor(s) and not low <= s <= high:
        warnings.warn(
            f"the student was distilled on s in [{low:g}, {high:g}]; s = {s:g} is extrapolated",
            ExtrapolationWarning,
            stacklevel=2,
        )
    if negative is not None:
        return lambda x_t, t, cond: model(x_t, t, cond, s=s, negative=negative)
    return lambda x_t, t, cond: model(x_t, t, cond, s=s)
