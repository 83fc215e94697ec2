"""The VP forward process q(x_t | x_0) on diffusers' DDPM noise schedule, and its training targets."""

import torch
from diffusers import DDPMScheduler

from .errors import UserError

PREDICTION_TYPES = ("epsilon", "v_prediction")


def make_noise_schedule(prediction_type: str = "epsilon", num_train_timesteps: int = 1000) -> DDPMScheduler:
    """The training noise schedule; samplers are built from its config.

    No x_0 clipping: DDIM clips x_0 without recomputing eps, which leaves guided samples noisy.
    """
    if prediction_type not in PREDICTION_TYPES:
        raise UserError(f"prediction type must be one of {', '.join(PREDICTION_TYPES)}, got {prediction_type!r}")
    return DDPMScheduler(
        num_train_timesteps=num_train_timesteps,
        beta_schedule="squaredcos_cap_v2",
        prediction_type=prediction_type,
        clip_sample=False,
    )


def draw_t(schedule: DDPMScheduler, n: int, generator: torch.Generator) -> torch.Tensor:
    """t ~ U{0, ..., T-1}, one per sample."""
    return torch.randint(0, schedule.config.num_train_timesteps, (n,), generator=generator)


def add_noise(schedule: DDPMScheduler, x_0, eps, t):
    """x_t = sqrt(alpha_bar_t)·x_0 + sqrt(1 − alpha_bar_t)·eps."""
    return schedule.add_noise(x_0, eps, t)


def target(schedule: DDPMScheduler, x_0, eps, t):
    """What the network predicts: eps, or v = sqrt(alpha_bar_t)·eps − sqrt(1 − alpha_bar_t)·x_0 (Salimans & Ho 2022)."""
    if schedule.config.prediction_type == "epsilon":
        return eps
    return schedule.get_velocity(x_0, eps, t)


def noisy_batch(schedule: DDPMScheduler, x_0: torch.Tensor, generator: torch.Generator) -> tuple:
    """Draw t and eps, and return (x_t, t, eps) from q(x_t | x_0)."""
    t = draw_t(schedule, x_0.shape[0], generator)
    eps = torch.randn(x_0.shape, generator=generator)
    return add_noise(schedule, x_0, eps, t), t, eps


def ddim_step(schedule: DDPMScheduler, pred, x_t, alpha_bar_t, alpha_bar_prev):
    """One deterministic DDIM step (eta = 0) per row, each row with its own alpha_bar: x_t -> x_prev."""
    a, a_prev = (v.reshape(-1, *([1] * (x_t.ndim - 1))) for v in (alpha_bar_t, alpha_bar_prev))
    if schedule.config.prediction_type == "epsilon":
        eps = pred
        x_0 = (x_t - (1 - a).sqrt() * eps) / a.sqrt()
    else:
        x_0 = a.sqrt() * x_t - (1 - a).sqrt() * pred
        eps = (1 - a).sqrt() * x_t + a.sqrt() * pred
    return a_prev.sqrt() * x_0 + (1 - a_prev).sqrt() * eps
