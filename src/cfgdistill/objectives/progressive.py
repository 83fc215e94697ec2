"""Progressive distillation of a guided student, stage 2 of Meng et al. (CVPR 2023): half the steps per round.

The round's teacher is the previous student, guidance scale still an input. Per row: noised data at a point
t_a of the student's grid, a scale s ~ U[s_min, s_max], and the point where **two** deterministic teacher
steps at s land (t_a → t_m → t_b on the teacher's grid, twice as fine). The student learns the prediction
whose **one** step t_a → t_b lands there (Salimans & Ho 2022, the process's `jump_target`).
"""

import torch

from .base import Objective


class ProgressiveDistillation(Objective):
    name = "student"

    def __init__(self, teacher, process, conditioning, config, teacher_grid: list, guidance_range: tuple):
        self.teacher, self.process, self.conditioning, self.config = teacher, process, conditioning, config
        points = torch.tensor([*teacher_grid, process.end], dtype=torch.float64)
        self.starts, self.middles, self.ends = points[0:-1:2], points[1:-1:2], points[2::2]
        self.s_range = guidance_range

    def to(self, device):
        self.teacher.to(device)

    def draw(self, x_0, labels, generator) -> dict:
        n = x_0.shape[0]
        k = torch.randint(0, len(self.starts), (n,), generator=generator)
        t_a = self.typed(self.starts[k])
        eps = torch.randn(x_0.shape, generator=generator)
        cond = self.conditioning.draw(labels, generator, self.config.p_uncond)
        low, high = self.s_range
        s = low + (high - low) * torch.rand(n, generator=generator)
        rows = {"x_a": self.process.add_noise(x_0, eps, t_a), "t_a": t_a, "cond": cond, "s": s}
        return rows | {"t_m": self.typed(self.middles[k]), "t_b": self.typed(self.ends[k])}

    def typed(self, t: torch.Tensor) -> torch.Tensor:
        """VP timesteps are integers (−1 marks clean data), flow's T·σ real."""
        return t.long() if self.process.name == "vp" else t.float()

    @torch.no_grad()
    def two_teacher_steps(self, rows: dict) -> torch.Tensor:
        x_a, t_a, t_m, t_b, cond, s = (rows[key] for key in ("x_a", "t_a", "t_m", "t_b", "cond", "s"))
        x_m = self.process.jump(x_a, self.teacher(x_a, t_a, cond, s).float(), t_a, t_m)
        return self.process.jump(x_m, self.teacher(x_m, t_m, cond, s).float(), t_m, t_b)

    def loss(self, student, rows: dict) -> torch.Tensor:
        x_b = self.two_teacher_steps(rows)
        target, weight = self.process.jump_target(rows["x_a"].float(), x_b, rows["t_a"], rows["t_b"])
        pred = student(rows["x_a"], rows["t_a"], rows["cond"], rows["s"]).float()
        return ((pred - target).square().flatten(1).mean(1) * weight).mean()

    @torch.no_grad()
    def non_finite_cause(self, rows: dict) -> str | None:
        if not torch.isfinite(self.two_teacher_steps(rows)).all():
            return "the round's teacher steps are not finite: its weights are damaged or s is too large"
        return None
