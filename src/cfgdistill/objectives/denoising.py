"""The teacher's objective: the diffusion loss with condition dropout (Ho & Salimans 2022)."""

import torch
import torch.nn.functional as F

from .base import Objective


class Denoising(Objective):
    """MSE between model(x_t, t, c) and the process's target, c dropped to the null condition with p_uncond."""

    name = "teacher"

    def __init__(self, process, conditioning, p_uncond: float):
        self.process, self.conditioning, self.p_uncond = process, conditioning, p_uncond

    def draw(self, x_0, labels, generator) -> dict:
        x_t, t, eps = self.process.noisy_batch(x_0, generator)
        cond = self.conditioning.draw(labels, generator, self.p_uncond)
        return {"x_t": x_t, "t": t, "cond": cond, "target": self.process.target(x_0, eps, t)}

    def loss(self, model, rows: dict) -> torch.Tensor:
        return F.mse_loss(model(rows["x_t"], rows["t"], rows["cond"]).float(), rows["target"])
