"""Guidance distillation, stage 1 of Meng et al. (CVPR 2023): one student pass learns the teacher's CFG output."""

import hashlib
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from .checkpoint import Checkpoint
from .conditioning import make_conditioning
from .data import ImageDataset, load_dataset
from .diffusion import noisy_batch
from .errors import UserError
from .guidance import cfg_prediction
from .loop import LoopConfig, Objective, RunOptions, fit
from .models import make_student


@dataclass
class DistillConfig(LoopConfig):
    steps: int = 1500
    warmup_steps: int = 50
    guidance_min: float = 1.0
    guidance_max: float = 6.0

    def validate(self):
        super().validate()
        for name in ("guidance_min", "guidance_max"):
            value = getattr(self, name)
            if not (value == value and abs(value) != float("inf")):
                raise UserError(f"{name.replace('_', '-')} must be a finite number, got {value}")
        if self.guidance_min > self.guidance_max:
            raise UserError(f"guidance-min ({self.guidance_min}) must not exceed guidance-max ({self.guidance_max})")


class DistillObjective(Objective):
    """Student(x_t, t, c, s) against the teacher's batched CFG output at the same x_t, t, c and s ~ U[s_min, s_max]."""

    name = "student"

    def __init__(self, teacher, noise_schedule, conditioning, config: DistillConfig):
        super().__init__(noise_schedule, conditioning, teacher.config.num_classes)
        self.teacher, self.config = teacher, config

    def to(self, device):
        self.teacher.to(device)

    def draw(self, x_0, labels, generator) -> dict:
        x_t, t, _ = noisy_batch(self.noise_schedule, x_0, generator)
        cond = self.conditioning.draw(labels, generator)
        s_min, s_max = self.config.guidance_min, self.config.guidance_max
        s = s_min + (s_max - s_min) * torch.rand(x_0.shape[0], generator=generator)
        return {"x_t": x_t, "t": t, "cond": cond, "s": s}

    def loss(self, student, rows: dict) -> torch.Tensor:
        with torch.no_grad():
            target = cfg_prediction(self.teacher, rows["x_t"], rows["t"], rows["cond"], rows["s"])
        return F.mse_loss(student(rows["x_t"], rows["t"], rows["cond"], rows["s"]).float(), target.float())


def fingerprint(model) -> str:
    """A short hash of a network's weights, so a resume cannot silently switch teachers."""
    digest = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def distill(teacher: Checkpoint, config: DistillConfig, dataset: ImageDataset | None = None, run: RunOptions | None = None) -> Checkpoint:
    """Train a student, initialised from the teacher, on targets cfg(teacher(x_t, t), s).

    The target is one batched teacher evaluation at the student's own x_t and t, not a sampling loop.
    """
    config.validate()
    if teacher.kind != "teacher":
        raise UserError("distillation needs a teacher checkpoint, but this one is a student")
    data = teacher.meta["data"]
    dataset = dataset or load_dataset(data["name"], "train", image_shape=tuple(data["image_shape"]))
    meta = teacher.meta["conditioning"]
    conditioning = make_conditioning(meta["type"], data["name"], meta["class_names"], config.p_uncond, meta)
    teacher_model = teacher.model.eval().requires_grad_(False)
    student = make_student(teacher_model, (config.guidance_min, config.guidance_max))
    objective = DistillObjective(teacher_model, teacher.noise_schedule, conditioning, config)
    fit(student, objective, dataset, config, run, identity={"teacher": fingerprint(teacher_model), "data_images": len(dataset)})
    teacher_model.cpu()
    return Checkpoint.create(
        student.cpu(),
        teacher.noise_schedule,
        kind="student",
        dataset=dataset,
        training={"teacher": teacher.meta.get("training"), "distill": asdict(config)},
        conditioning=conditioning,
    )
