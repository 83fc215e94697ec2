"""Meng et al.'s N-step stochastic sampler (CVPR 2023, their Algorithm 3), for any process with `jump`.

Each step from grid point t_i goes deterministically two points down, to t_{i+2}, then back up to t_{i+1}
by fresh forward noise q(x_{t_{i+1}} | x_{t_{i+2}}); the last step is deterministic. N network passes, as
the deterministic sampler. Written here: no diffusers scheduler steps twice its length and re-noises back.
"""

from types import SimpleNamespace

import torch


class StochasticSampler:
    """A scheduler-like object for `pipelines.sample.denoise`: `timesteps` and `step(pred, t, x)`.

    `generators` holds one generator per image of the batch, so an image's noise does not depend on the batch.
    """

    def __init__(self, process, grid: list, generators: list):
        self.process, self.generators = process, generators
        self.points = [float(t) for t in grid] + [float(process.end)]
        self.timesteps = torch.tensor(self.points[:-1])
        self.index = 0

    def step(self, pred: torch.Tensor, t, x: torch.Tensor) -> SimpleNamespace:
        i, self.index = self.index, self.index + 1
        point = [torch.tensor(p, device=x.device) for p in self.points[i : i + 3]]
        if len(point) < 3:  # the last step
            return SimpleNamespace(prev_sample=self.process.jump(x, pred, point[0], point[1]))
        far = self.process.jump(x, pred, point[0], point[2])
        return SimpleNamespace(prev_sample=self.renoise(far, point[2], point[1]))

    def renoise(self, x_b: torch.Tensor, t_b, t_m) -> torch.Tensor:
        """A draw of q(x_m | x_b) for t_m noisier than t_b: x_m = (a_m/a_b)·x_b + sqrt(σ_m² − (a_m/a_b)²·σ_b²)·z."""
        (a_b, s_b), (a_m, s_m) = self.process.alpha_sigma(t_b), self.process.alpha_sigma(t_m)
        ratio = a_m / a_b
        z = torch.stack([torch.randn(x_b.shape[1:], generator=g) for g in self.generators]).to(x_b.device)
        return ratio * x_b + (s_m.square() - (ratio * s_b).square()).clamp(min=0).sqrt() * z
