"""The Python API, one function per command, each taking the command's config dataclass (config.py).

teacher = train_teacher(TrainConfig(steps=1200), RunOptions(out="runs/teacher"))
student = distill(teacher, DistillConfig(steps=600), RunOptions(out="runs/student"))
images = sample(student, SampleConfig(s=3, labels=["7"], n=8, out="sevens.png"))
evaluation = evaluate(teacher, student, EvaluateConfig(n=100, out="report"))
"""

import math
from pathlib import Path

import torch

from .checkpoint import Checkpoint, load
from .config import EvaluateConfig, SampleConfig
from .errors import UserError
from .evaluation.markdown import write_report
from .evaluation.pipelines import COLUMNS, evaluate_pipelines, write_pipeline_report
from .evaluation.report import Evaluation
from .evaluation.report import evaluate as evaluate_pair
from .guidance import parse_options, rule_options
from .guidance.autoguide import load_guide
from .images import tile, write_array
from .io import WRITE_ERRORS, check_file_output, check_output_dir, why, write_all
from .pipelines.distill import distill
from .pipelines.progressive import progressive
from .pipelines.sample import check_labels, generate, sampling_steps
from .pipelines.train import train_teacher
from .pretrained import is_pipeline
from .pretrained.sampling import sample_pipeline

__all__ = ["check_outputs", "distill", "evaluate", "load", "progressive", "sample", "train_teacher"]


def _checkpoint(model) -> Checkpoint:
    return model if isinstance(model, Checkpoint) else load(model)


def resolve_labels(items: list, class_names: list) -> list:
    """Class names or indices to indices; a name wins where it is also a number (digits' "3")."""
    labels = []
    for item in items:
        if item in class_names:
            labels.append(class_names.index(item))
        elif str(item).lstrip("-").isdigit():
            labels.append(int(item))
        else:
            raise UserError(f"unknown class {item!r}; the classes are: {', '.join(class_names)}")
    return labels


def conditions(checkpoint: Checkpoint, config: SampleConfig) -> tuple:
    """(cond, negative, columns of the grid) for what `config` asks: prompts, labels, or every class."""
    conditioning, n = checkpoint.conditioning, config.n
    if config.prompt is not None and config.labels is not None:
        raise UserError("give --prompt or --labels, not both")
    if config.negative_prompt is not None and conditioning.kind != "text":
        raise UserError("--negative-prompt needs a text-conditioned model; this one takes class labels")
    if config.prompt is not None:
        rows = config.prompt * math.ceil((n or len(config.prompt)) / len(config.prompt))
        cond, columns = conditioning.encode(prompts=rows[: n or len(config.prompt)]), len(config.prompt)
    else:
        given = config.labels is not None
        labels = (
            resolve_labels(config.labels, conditioning.class_names) if given else list(range(checkpoint.num_classes))
        )
        if not labels:
            raise UserError("--labels is empty")
        check_labels(labels, checkpoint.num_classes)
        n = n or (len(labels) if given else 10 * checkpoint.num_classes)
        cond = conditioning.encode(labels=torch.tensor(labels).repeat(math.ceil(n / len(labels)))[:n])
        columns = len(labels)
    negative = (
        None if config.negative_prompt is None else conditioning.encode(prompts=[config.negative_prompt] * len(cond))
    )
    return cond, negative, columns


def check_outputs(config: SampleConfig):
    """Refuse, before any sampling, an output path that cannot be written."""
    for path, suffix in ((config.out, ".png"), (config.out_array, ".npy")):
        if path is not None:
            check_file_output(path, suffix)


def sample(model: Checkpoint | str | Path, config: SampleConfig | None = None) -> torch.Tensor:
    """N×C×H×W samples in [-1, 1]; with `config.out` (and `out_array`) also the PNG grid (and a .npy array).

    `model` is a cfgdistill checkpoint or a diffusers pipeline folder (drawn by its stock class).
    """
    config = (config or SampleConfig()).validate()
    check_outputs(config)
    if not isinstance(model, Checkpoint) and is_pipeline(model):
        images, columns, _ = sample_pipeline(model, config)
        return write_samples(images, columns, config, cell=max(32, images.shape[-1]))
    checkpoint = _checkpoint(model)
    rule, options = sampling_rule(checkpoint, config)
    cond, negative, columns = conditions(checkpoint, config)
    images = generate(
        checkpoint.model,
        checkpoint.process,
        cond,
        s=config.s,
        rule=rule,
        options=options,
        steps=sampling_steps(checkpoint, config.steps, config.sampler),
        sampler=config.sampler,
        seed=config.seed,
        negative=negative,
        batch_size=config.batch_size,
        progress=not config.quiet,
    )
    return write_samples(images, columns, config)


def sampling_rule(checkpoint: Checkpoint, config: SampleConfig) -> tuple:
    """(rule, its options): a teacher's `--guider` (default cfg); a student's own, learnt rule."""
    own = checkpoint.meta.guidance.rule
    if checkpoint.kind == "student":
        if config.guider not in (None, own):
            raise UserError(f"this student learnt the {own} rule and samples with it only, not {config.guider}")
        if config.guider_option or config.guide_model:
            raise UserError("a student's guidance rule is learnt: it takes no --guider-option or --guide-model")
        return own, {}
    name = config.guider or own
    options = rule_options(name, parse_options(config.guider_option))
    if (name == "autoguidance") != (config.guide_model is not None):
        raise UserError("--guider autoguidance needs --guide-model PATH, and --guide-model goes with it only")
    if config.guide_model is not None:
        options["guide"] = load_guide(checkpoint, config.guide_model).model
    return name, options


def write_samples(images: torch.Tensor, columns: int, config: SampleConfig, cell: int = 32) -> torch.Tensor:
    """The grid (and array) that `config` asks for, both or neither; returns the images."""
    grid = tile(images, ncol=min(len(images), columns), cell=cell) if config.out is not None else None
    # write_all already writes under temporary names: the writers write straight to them
    writers = {
        config.out: lambda tmp: grid.save(tmp, format="PNG"),
        config.out_array: lambda tmp: write_array(images, tmp),
    }
    writers = {path: write for path, write in writers.items() if path is not None}
    try:
        write_all(writers)
    except WRITE_ERRORS as error:
        targets = " and ".join(map(str, writers))
        raise UserError(f"cannot write {targets}: {why(error)}; nothing was written") from None
    return images


def evaluate(teacher, student, config: EvaluateConfig | None = None) -> Evaluation:
    """Teacher and student side by side at every s of `config.guidance`; with `config.out`, the report files.

    A student pipeline folder is judged against its teacher pipeline in their stock classes
    (evaluation/pipelines.py)."""
    config = (config or EvaluateConfig()).validate()
    if config.out is not None:
        check_output_dir(config.out, config.overwrite)
    if not isinstance(student, Checkpoint) and is_pipeline(student):
        return evaluate_pipeline_pair(teacher, student, config)
    teacher, student = _checkpoint(teacher), _checkpoint(student)
    if teacher.kind != "teacher" or student.kind != "student":
        raise UserError(f"--teacher must hold a teacher and --student a student; got {teacher.kind} and {student.kind}")
    if teacher.meta.data.name != student.meta.data.name:
        raise UserError("teacher and student were trained on different datasets")
    if teacher.meta.process != student.meta.process:
        raise UserError(
            f"teacher and student use different forward processes ({teacher.meta.process} and {student.meta.process})"
        )
    evaluation = evaluate_pair(teacher, student, config)
    if config.out is not None:
        try:
            write_report(evaluation, config.out)
        except WRITE_ERRORS as error:
            raise UserError(f"cannot write the report to {config.out}: {why(error)}") from None
    return evaluation


def evaluate_pipeline_pair(teacher, student, config: EvaluateConfig) -> Evaluation:
    if isinstance(teacher, Checkpoint) or (Path(teacher).is_dir() and not is_pipeline(teacher)):
        raise UserError("--student is a pipeline folder, so --teacher must be the pipeline it was distilled from")
    report, images = evaluate_pipelines(teacher, student, config)
    if config.out is not None:
        try:
            write_pipeline_report(report, images, config.out)
        except WRITE_ERRORS as error:
            raise UserError(f"cannot write the report to {config.out}: {why(error)}") from None
    grids = {name: torch.stack([x[name][:COLUMNS] for x in images.values()]) for name in ("teacher", "student")}
    return Evaluation(report, grids)
