"""Guidance distillation, stage 1 of Meng et al. (CVPR 2023): one student pass learns the teacher's CFG output."""

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from .checkpoint import Checkpoint
from .data import ImageDataset, load_dataset
from .diffusion import noisy_batch
from .errors import UserError
from .guidance import cfg_prediction
from .models import make_student
from .train import drop_labels, fit, positive


@dataclass
class DistillConfig:
    steps: int = 1500
    batch_size: int = 64
    lr: float = 1e-3
    warmup_steps: int = 50
    guidance_min: float = 1.0
    guidance_max: float = 6.0
    p_uncond: float = 0.1
    ema_decay: float = 0.999
    seed: int = 0

    def validate(self):
        positive(steps=self.steps, batch_size=self.batch_size, lr=self.lr)
        for name in ("guidance_min", "guidance_max"):
            value = getattr(self, name)
            if not (value == value and abs(value) != float("inf")):
                raise UserError(f"{name.replace('_', '-')} must be a finite number, got {value}")
        if self.guidance_min > self.guidance_max:
            raise UserError(f"guidance-min ({self.guidance_min}) must not exceed guidance-max ({self.guidance_max})")
        if not 0 <= self.p_uncond < 1:
            raise UserError(f"p-uncond must be in [0, 1), got {self.p_uncond}")


def distill(teacher: Checkpoint, config: DistillConfig, dataset: ImageDataset | None = None, progress: bool = True) -> Checkpoint:
    """Train a student, initialised from the teacher, on targets cfg(teacher(x_t, t), s) with s ~ U[s_min, s_max].

    The target is one batched teacher evaluation at the student's own x_t and t, not a sampling loop.
    """
    config.validate()
    if teacher.kind != "teacher":
        raise UserError("distillation needs a teacher checkpoint, but this one is a student")
    dataset = dataset or load_dataset(teacher.meta["data"]["name"], "train")
    schedule = teacher.noise_schedule
    s_min, s_max = config.guidance_min, config.guidance_max
    teacher_model = teacher.model.eval().requires_grad_(False)
    student = make_student(teacher_model, (s_min, s_max))
    null = teacher_model.config.num_classes
    generator = torch.Generator().manual_seed(config.seed + 1)  # noise, t, s and dropout; batches have their own

    def loss_fn(student, x_0, labels):
        x_t, t, _ = noisy_batch(schedule, x_0, generator)
        labels = drop_labels(labels, null, config.p_uncond, generator)
        s = s_min + (s_max - s_min) * torch.rand(x_0.shape[0], generator=generator)
        with torch.no_grad():
            target = cfg_prediction(teacher_model, x_t, t, labels, s)
        return F.mse_loss(student(x_t, t, labels, s), target)

    fit(student, loss_fn, dataset, config, "distill student", progress)
    return Checkpoint.create(
        student,
        schedule,
        kind="student",
        dataset=dataset,
        training={"teacher": teacher.meta.get("training"), "distill": asdict(config)},
    )
