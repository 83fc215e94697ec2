"""A cfgdistill checkpoint as the teacher of `distill` (commands/distill.py)."""

import hashlib
from dataclasses import asdict
from pathlib import Path

import torch

from ..checkpoint import Checkpoint, load
from ..config import DistillConfig, PipelineOptions, RunOptions
from ..data import ImageDataset, load_dataset
from ..errors import UserError
from ..guidance import on_path
from ..guidance.autoguide import GuidedPair, load_guide
from ..networks import Denoiser, make_student
from ..objectives.guidance_distillation import GUIDANCE_WEIGHTING
from .preview import class_preview
from .session import Session


def fingerprint(model) -> str:
    """A short hash of a network's weights, so a resume cannot silently switch teachers."""
    digest = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


class CheckpointTeacher:
    """A cfgdistill teacher checkpoint: its network (with autoguidance's guide), its process, its data."""

    def __init__(self, teacher, options: PipelineOptions, dataset: ImageDataset | None):
        check_no_pipeline_options(options)
        self.checkpoint = teacher if isinstance(teacher, Checkpoint) else load(teacher)
        self.dataset = dataset

    def check(self, config: DistillConfig, rule) -> DistillConfig:
        check_teacher(self.checkpoint, config, rule)
        self.guide = autoguide_of(self.checkpoint, config)
        return config

    def open(self, config: DistillConfig, run: RunOptions, rule) -> Session:
        teacher, guide = self.checkpoint, self.guide
        data = teacher.meta.data
        dataset = self.dataset or load_dataset(config.data or data.name, "train", image_shape=tuple(data.image_shape))
        check_classes(dataset.class_names, teacher.class_names)
        teacher_model = teacher.model.eval().requires_grad_(False)
        torch.manual_seed(config.seed)  # the guidance embedding's first layers are random: same seed, same student
        scales = (config.guidance_min, config.guidance_max)
        student = make_student(teacher_model, scales, negatives=bool(config.negatives))
        guide_model = guide.model.eval().requires_grad_(False) if guide else None
        pair = GuidedPair(teacher_model, guide_model, **rule.keywords) if guide else teacher_model
        identity = run_identity(teacher_model, guide, dataset, config)
        preview = class_preview(teacher.process, teacher.conditioning)
        return Session(pair, student, teacher.process, teacher.conditioning, dataset, identity, preview)

    def export(self, session: Session, config: DistillConfig, rule) -> Checkpoint:
        session.pair.cpu()
        return student_checkpoint(session.student.cpu(), self.checkpoint, session.data, config, rule)


def run_identity(teacher_model, guide, dataset, config: DistillConfig) -> dict:
    """What a resumed run must share besides its config: the teacher, the guide, the data, the weighting."""
    identity = {"teacher": fingerprint(teacher_model), "data_images": len(dataset)}
    if guide:
        identity["guide"] = fingerprint(guide.model)
    if config.loss_space == "guidance":
        identity["guidance_weighting"] = GUIDANCE_WEIGHTING
    return identity


def student_checkpoint(student, teacher: Checkpoint, dataset, config: DistillConfig, rule) -> Checkpoint:
    """The student with its record: the teacher's training, this run's config, the rule, options and guide."""
    result = Checkpoint.create(
        student,
        teacher.process,
        kind="student",
        dataset=dataset,
        training={"teacher": teacher.meta.training, "distill": asdict(config)},
        conditioning=teacher.conditioning,
        rule=config.guider,
        options=rule.keywords,
    )
    result.meta.guidance.guide_model = str(Path(config.guide_model).resolve()) if config.guide_model else None
    return result


def autoguide_of(teacher: Checkpoint, config: DistillConfig) -> Checkpoint | None:
    """Autoguidance's guide model, checked against the teacher; None for every other rule."""
    if (config.guider == "autoguidance") != (config.guide_model is not None):
        raise UserError("--guider autoguidance needs --guide-model PATH, and --guide-model goes with it only")
    return load_guide(teacher, config.guide_model) if config.guide_model is not None else None


def check_no_pipeline_options(options: PipelineOptions):
    given = [name for name, value in asdict(options).items() if value not in (None, False)]
    if given:
        flag = "--" + given[0].replace("_", "-")
        raise UserError(f"{flag} applies to a diffusers pipeline as the teacher, not to a cfgdistill checkpoint")


def check_teacher(teacher: Checkpoint, config: DistillConfig, rule):
    """A teacher, and a path grid its schedule can hold."""
    if teacher.kind != "teacher":
        raise UserError("distillation needs a teacher checkpoint, but this one is a student")
    if on_path(rule) and config.trajectory_fraction != 1:
        raise UserError(
            f"this {config.guider} depends on the sampling path (its step or memory): a student learns it on the "
            "teacher's paths alone: pass --set trajectory_fraction=1"
        )
    if config.negatives and not isinstance(teacher.model, Denoiser):
        raise UserError("--negatives needs a UNet teacher (--arch unet); the Flux transformer has no negative input")
    if config.negatives and config.guider == "autoguidance":
        raise UserError("autoguidance guides by a weaker model, not by a negative condition: leave out --negatives")
    if config.trajectory_steps > teacher.process.num_train_timesteps:
        raise UserError(
            f"trajectory-steps ({config.trajectory_steps}) exceeds the "
            f"{teacher.process.num_train_timesteps} timesteps of the teacher's schedule"
        )


def check_classes(data_classes: list, teacher_classes: list):
    """The student learns the teacher's classes: the data must have the same ones, in the same order."""
    if list(data_classes) != list(teacher_classes):
        raise UserError(
            f"the data's classes ({', '.join(map(str, data_classes))}) differ from the teacher's "
            f"({', '.join(map(str, teacher_classes))})"
        )
