"""`distill`: a one-pass student of a teacher's guided prediction (stage 1 of Meng et al., CVPR 2023)."""

import hashlib
from dataclasses import asdict
from pathlib import Path

import torch

from ..checkpoint import Checkpoint, load
from ..config import DistillConfig, RunOptions
from ..data import ImageDataset, load_dataset
from ..errors import UserError
from ..guidance import get_rule
from ..networks import make_student
from ..objectives import GuidanceDistillation
from ..objectives.guidance_distillation import GUIDANCE_WEIGHTING
from ..training.accelerator import is_main_process
from ..training.loop import fit
from ..training.state import prepare_run_folder
from .preview import class_preview


def fingerprint(model) -> str:
    """A short hash of a network's weights, so a resume cannot silently switch teachers."""
    digest = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def distill(
    teacher: Checkpoint | str | Path,
    config: DistillConfig,
    run: RunOptions | None = None,
    dataset: ImageDataset | None = None,
) -> Checkpoint:
    """Train a student, initialised from the teacher, on the teacher's output under the rule `config.guider`.

    `dataset` (or `config.data`) gives the images x_t is noised from; by default the teacher's own.
    With `run.out`, checkpoints and logs go there and the student is saved there at the end.
    """
    config.validate()
    rule = get_rule(config.guider)
    run = run or RunOptions()
    if run.out is not None:
        prepare_run_folder(run)
    teacher = teacher if isinstance(teacher, Checkpoint) else load(teacher)
    if teacher.kind != "teacher":
        raise UserError("distillation needs a teacher checkpoint, but this one is a student")
    data = teacher.meta.data
    dataset = dataset or load_dataset(config.data or data.name, "train", image_shape=tuple(data.image_shape))
    teacher_model = teacher.model.eval().requires_grad_(False)
    torch.manual_seed(config.seed)  # the guidance embedding's first layers are random: same seed, same student
    student = make_student(teacher_model, (config.guidance_min, config.guidance_max))
    objective = GuidanceDistillation(teacher_model, teacher.process, teacher.conditioning, config, rule, dataset)
    identity = {"teacher": fingerprint(teacher_model), "data_images": len(dataset)}
    if config.loss_space == "guidance":
        identity["guidance_weighting"] = GUIDANCE_WEIGHTING
    fit(student, objective, dataset, config, run, identity, class_preview(teacher.process, teacher.conditioning))
    teacher_model.cpu()
    result = Checkpoint.create(
        student.cpu(),
        teacher.process,
        kind="student",
        dataset=dataset,
        training={"teacher": teacher.meta.training, "distill": asdict(config)},
        conditioning=teacher.conditioning,
        rule=config.guider,
    )
    if run.out is not None and is_main_process():
        result.save(run.out, overwrite=True)
    return result
