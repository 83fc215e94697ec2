"""The variance-preserving DDPM process on diffusers' noise schedule, its targets and its samplers."""

import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
)

from ..config import PREDICTIONS, SAMPLERS
from ..errors import UserError
from ..schema import SCHEDULER

SCHEDULERS = {
    "ddim": DDIMScheduler,  # deterministic (eta = 0)
    "dpm++": DPMSolverMultistepScheduler,  # DPM-Solver++(2M)
    "euler": EulerDiscreteScheduler,
    "heun": HeunDiscreteScheduler,  # 2nd order: two passes per step but the last
}
assert (*SCHEDULERS, "stochastic") == SAMPLERS  # stochastic: pipelines.sample.scheduler_for


class VP:
    """x_t = sqrt(alpha_bar_t)·x_0 + sqrt(1 − alpha_bar_t)·eps, t ∈ {0, …, T − 1}, on a cosine schedule.

    The network predicts eps or v = sqrt(alpha_bar_t)·eps − sqrt(1 − alpha_bar_t)·x_0 (Salimans & Ho 2022).
    """

    name = "vp"
    default_sampler = "ddim"
    scheduler_fields = SCHEDULER

    def __init__(self, schedule: DDPMScheduler):
        self.schedule = schedule

    @classmethod
    def create(cls, prediction_type: str = "epsilon", num_train_timesteps: int = 1000) -> "VP":
        """No x_0 clipping: DDIM clips x_0 without recomputing eps, which leaves guided samples noisy."""
        if prediction_type not in PREDICTIONS:
            raise UserError(f"prediction type must be one of {', '.join(PREDICTIONS)}, got {prediction_type!r}")
        return cls(
            DDPMScheduler(
                num_train_timesteps=num_train_timesteps,
                beta_schedule="squaredcos_cap_v2",
                prediction_type=prediction_type,
                clip_sample=False,
            )
        )

    @classmethod
    def load(cls, folder) -> "VP":
        return cls(DDPMScheduler.from_pretrained(folder))

    def save(self, folder):
        self.schedule.save_pretrained(folder)

    @property
    def prediction_type(self) -> str:
        return self.schedule.config.prediction_type

    @property
    def num_train_timesteps(self) -> int:
        return self.schedule.config.num_train_timesteps

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        return self.schedule.alphas_cumprod

    def draw_t(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """t ~ U{0, ..., T-1}, one per sample."""
        return torch.randint(0, self.num_train_timesteps, (n,), generator=generator)

    def bin(self, t: torch.Tensor) -> torch.Tensor:
        """Each t's index in tables over t (t is already an integer here)."""
        return torch.as_tensor(t).long()

    def add_noise(self, x_0, eps, t):
        return self.schedule.add_noise(x_0, eps, t)

    def target(self, x_0, eps, t):
        """What the network learns to predict at (x_t, t): eps or v."""
        if self.prediction_type == "epsilon":
            return eps
        return self.schedule.get_velocity(x_0, eps, t)

    def noisy_batch(self, x_0: torch.Tensor, generator: torch.Generator) -> tuple:
        """Draw t and eps, and return (x_t, t, eps) from q(x_t | x_0)."""
        t = self.draw_t(x_0.shape[0], generator)
        eps = torch.randn(x_0.shape, generator=generator)
        return self.add_noise(x_0, eps, t), t, eps

    def eps_weight(self, t: torch.Tensor) -> torch.Tensor:
        """The factor that turns a row's squared prediction error at t into its squared eps error.

        eps = sqrt(alpha_bar_t)·v + sqrt(1 − alpha_bar_t)·x_t, so an error in v is sqrt(alpha_bar_t) as large in eps.
        """
        if self.prediction_type == "epsilon":
            return torch.ones(t.shape, device=t.device)
        return self.alphas_cumprod.to(t.device)[t]

    def sampler(self, name: str | None = None):
        """A fresh diffusers scheduler on this schedule; "trailing" spacing starts from t = T − 1."""
        name = name or self.default_sampler
        if name not in SCHEDULERS:
            raise UserError(f"unknown sampler {name!r}; choose one of: {', '.join(SCHEDULERS)}")
        return SCHEDULERS[name].from_config(self.schedule.config, timestep_spacing="trailing")

    def deterministic_path(self, steps: int) -> "DeterministicPath":
        return DeterministicPath(self.sampler("ddim"), steps)

    # Few-step students (stage 2): jumps between any two points of an explicit grid, and the sampler for it.
    end = -1  # the point after a grid's last: clean data, alpha_bar = 1

    def grid(self, steps: int) -> list:
        """The deterministic sampler's timesteps for `steps` steps, descending (DDIM's trailing grid)."""
        sampler = self.sampler("ddim")
        sampler.set_timesteps(steps)
        return [float(t) for t in sampler.timesteps]

    def grid_sampler(self, grid: list):
        """A scheduler stepping exactly from each point of `grid` to the next, then to clean data: Euler on the
        probability-flow ODE, which is DDIM (DDIMScheduler itself steps by T // steps, off a recorded grid)."""
        sampler = EulerDiscreteScheduler.from_config(self.schedule.config, final_sigmas_type="zero")
        sampler.set_timesteps(timesteps=[int(t) for t in grid])
        return sampler

    def alpha_sigma(self, t: torch.Tensor) -> tuple:
        """(sqrt(alpha_bar_t), sqrt(1 − alpha_bar_t)) as columns for images; t = end is clean data."""
        t = torch.as_tensor(t)
        a_bar = self.alphas_cumprod.to(t.device)[t.clamp(min=0).long()].where(t >= 0, torch.ones_like(t).float())
        return a_bar.sqrt().view(-1, 1, 1, 1), (1 - a_bar).sqrt().view(-1, 1, 1, 1)

    def x0_eps(self, x_t, pred, t) -> tuple:
        a, sigma = self.alpha_sigma(t)
        if self.prediction_type == "epsilon":
            return (x_t - sigma * pred) / a, pred
        return a * x_t - sigma * pred, sigma * x_t + a * pred

    def jump(self, x_a, pred, t_a, t_b):
        """One deterministic (DDIM) step from t_a to t_b: x_b = a_b·x̂_0 + σ_b·ε̂."""
        x_0, eps = self.x0_eps(x_a, pred, t_a)
        a_b, sigma_b = self.alpha_sigma(t_b)
        return a_b * x_0 + sigma_b * eps

    def jump_target(self, x_a, x_b, t_a, t_b) -> tuple:
        """(the prediction whose one step from x_a lands on x_b, its rows' loss weights).

        x̃_0 = (x_b − (σ_b/σ_a)·x_a) / (a_b − (σ_b/σ_a)·a_a), as in Salimans & Ho (2022), weighted
        max(SNR, 1) in x_0 (their truncated SNR), which for a v model is max(a², σ²) in v.
        """
        if self.prediction_type != "v_prediction":
            raise ValueError("few-step targets need a v-prediction model: x̂_0 from eps diverges at high noise")
        (a_a, s_a), (a_b, s_b) = self.alpha_sigma(t_a), self.alpha_sigma(t_b)
        x_0 = (x_b - s_b / s_a * x_a) / (a_b - s_b / s_a * a_a)
        v = a_a * (x_a - a_a * x_0) / s_a - s_a * x_0  # v = a·eps − σ·x_0, eps from x_a and x_0
        return v, torch.maximum(a_a, s_a).square().flatten()


class DeterministicPath:
    """The deterministic sampler's grid, stepping rows that stand at different points of it.

    Teacher trajectories move many paths at once, each at its own step; every row goes through the same
    diffusers DDIM step that sampling uses.
    """

    def __init__(self, scheduler, steps: int):
        scheduler.set_timesteps(steps)
        self.scheduler, self.timesteps = scheduler, scheduler.timesteps.long()  # descending, as sampling runs them

    def __len__(self) -> int:
        return len(self.timesteps)

    def step(self, pred: torch.Tensor, x_t: torch.Tensor, k: torch.Tensor, moving: torch.Tensor) -> torch.Tensor:
        """x_t with each `moving` row advanced one step from grid index k[row]; other rows unchanged."""
        out = x_t.clone()
        for index in k[moving].unique().tolist():
            rows = moving & (k == index)
            out[rows] = self.scheduler.step(pred[rows], int(self.timesteps[index]), x_t[rows]).prev_sample
        return out
