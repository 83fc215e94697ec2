"""Rectified flow (Liu et al. 2023; SD3, FLUX): a straight path from data to noise, and the velocity along it."""

import torch
from diffusers import DPMSolverMultistepScheduler, FlowMatchEulerDiscreteScheduler, FlowMatchHeunDiscreteScheduler

from ..errors import UserError
from ..schema import FLOW_SCHEDULER


def dpm_flow(config):
    """DPM-Solver++(2M) on the same shifted flow sigmas (diffusers' `use_flow_sigmas`)."""
    return DPMSolverMultistepScheduler(
        num_train_timesteps=config.num_train_timesteps,
        prediction_type="flow_prediction",
        use_flow_sigmas=True,
        flow_shift=config.shift,
    )


SCHEDULERS = {
    "euler": FlowMatchEulerDiscreteScheduler.from_config,
    "heun": FlowMatchHeunDiscreteScheduler.from_config,  # 2nd order: two passes per step but the last
    "dpm++": dpm_flow,
}


class RectifiedFlow:
    """x_t = (1 − σ)·x_0 + σ·eps with σ = t / T ∈ [0, 1]; the network predicts the velocity v = eps − x_0.

    Training draws σ logit-normally (SD3, Esser et al. 2024), moved toward noise by `shift`:
    σ ← shift·σ / (1 + (shift − 1)·σ), the map the diffusers flow schedulers apply when sampling.
    The timestep the network sees is t = 1000·σ, as in diffusers' flow schedulers.
    """

    name = "flow"
    prediction_type = "flow_prediction"  # diffusers' name for a velocity model
    default_sampler = "euler"
    scheduler_fields = FLOW_SCHEDULER

    def __init__(self, schedule: FlowMatchEulerDiscreteScheduler):
        self.schedule = schedule

    @classmethod
    def create(cls, shift: float = 1.0, num_train_timesteps: int = 1000) -> "RectifiedFlow":
        if not shift > 0:
            raise UserError(f"shift must be > 0, got {shift}")
        return cls(FlowMatchEulerDiscreteScheduler(num_train_timesteps=num_train_timesteps, shift=float(shift)))

    @classmethod
    def load(cls, folder) -> "RectifiedFlow":
        return cls(FlowMatchEulerDiscreteScheduler.from_pretrained(folder))

    def save(self, folder):
        self.schedule.save_pretrained(folder)

    @property
    def num_train_timesteps(self) -> int:
        return self.schedule.config.num_train_timesteps

    @property
    def shift(self) -> float:
        return self.schedule.config.shift

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(t, dtype=torch.float32) / self.num_train_timesteps

    def draw_t(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """t = T·σ, σ = shifted sigmoid(N(0, 1)): continuous, one per sample."""
        sigma = torch.sigmoid(torch.randn(n, generator=generator))
        sigma = self.shift * sigma / (1 + (self.shift - 1) * sigma)
        return sigma * self.num_train_timesteps

    def bin(self, t: torch.Tensor) -> torch.Tensor:
        """Each t's integer bin in 0 … T − 1, for tables over t."""
        return torch.as_tensor(t).float().floor().long().clamp(0, self.num_train_timesteps - 1)

    def add_noise(self, x_0, eps, t):
        """Written out: diffusers' `scale_noise` looks σ up among the sampling schedule's steps only."""
        sigma = self.sigma(t).to(x_0.device).view(-1, *[1] * (x_0.ndim - 1))
        return (1 - sigma) * x_0 + sigma * eps

    def target(self, x_0, eps, t):
        return eps - x_0

    def noisy_batch(self, x_0: torch.Tensor, generator: torch.Generator) -> tuple:
        t = self.draw_t(x_0.shape[0], generator)
        eps = torch.randn(x_0.shape, generator=generator)
        return self.add_noise(x_0, eps, t), t, eps

    def eps_weight(self, t: torch.Tensor) -> torch.Tensor:
        """eps = x_t + (1 − σ)·v, so an error in v is (1 − σ) as large in eps."""
        return (1 - self.sigma(t).to(t.device)).square()

    def sampler(self, name: str | None = None):
        name = name or self.default_sampler
        if name not in SCHEDULERS:
            raise UserError(f"sampler {name!r} does not apply to a flow model; choose one of: {', '.join(SCHEDULERS)}")
        return SCHEDULERS[name](self.schedule.config)

    def deterministic_path(self, steps: int) -> "EulerPath":
        return EulerPath(self.sampler("euler"), steps)

    # Few-step students (stage 2): see `vp.VP.grid`.
    end = 0.0  # σ = 0: clean data

    def grid(self, steps: int) -> list:
        """The Euler sampler's timesteps T·σ (shifted) for `steps` steps, descending."""
        sampler = self.sampler("euler")
        sampler.set_timesteps(steps)
        return [float(t) for t in sampler.timesteps]

    def grid_sampler(self, grid: list):
        """FlowMatchEulerDiscreteScheduler on exactly these σ = t / T (already shifted, so shift 1), then σ = 0."""
        sampler = FlowMatchEulerDiscreteScheduler.from_config(self.schedule.config, shift=1.0)
        sampler.set_timesteps(sigmas=[t / self.num_train_timesteps for t in grid])
        return sampler

    def alpha_sigma(self, t: torch.Tensor) -> tuple:
        """(1 − σ, σ) as columns for images: x_t = (1 − σ)·x_0 + σ·eps."""
        sigma = self.sigma(t).view(-1, 1, 1, 1)
        return 1 - sigma, sigma

    def jump(self, x_a, v, t_a, t_b):
        """One Euler step: x_b = x_a + (σ_b − σ_a)·v."""
        return x_a + (self.sigma(t_b) - self.sigma(t_a)).to(x_a.device).view(-1, 1, 1, 1) * v

    def jump_target(self, x_a, x_b, t_a, t_b) -> tuple:
        """(the velocity whose Euler step from x_a lands on x_b, equal weights)."""
        step = (self.sigma(t_b) - self.sigma(t_a)).to(x_a.device).view(-1, 1, 1, 1)
        return (x_b - x_a) / step, torch.ones(len(x_a), device=x_a.device)


class EulerPath:
    """The Euler sampler's grid, stepping rows that stand at different points of it (see `vp.DeterministicPath`).

    The step x ← x + (σ_next − σ)·v is FlowMatchEulerDiscreteScheduler's own, written out because that
    scheduler keeps one step index for the whole batch; tests check the two agree.
    """

    def __init__(self, scheduler, steps: int):
        scheduler.set_timesteps(steps)
        self.timesteps, self.sigmas = scheduler.timesteps.float(), scheduler.sigmas.float()

    def __len__(self) -> int:
        return len(self.timesteps)

    def step(self, pred: torch.Tensor, x_t: torch.Tensor, k: torch.Tensor, moving: torch.Tensor) -> torch.Tensor:
        dt = (self.sigmas[k + 1] - self.sigmas[k]) * moving
        return x_t + dt.view(-1, *[1] * (x_t.ndim - 1)).to(x_t.dtype) * pred.to(x_t.dtype)
