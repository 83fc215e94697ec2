"""`sample`: images from a teacher guided by its rule (two passes a step) or from a student in one pass."""

import math
from pathlib import Path

import torch

from ..checkpoint import Checkpoint, load
from ..config import SampleConfig
from ..errors import UserError
from ..guidance import parse_options, rule_options
from ..guidance.autoguide import load_guide
from ..guidance.sampling import check_labels, generate, sampling_steps
from ..images import tile, write_array
from ..io import WRITE_ERRORS, check_file_output, why, write_all
from ..pretrained import is_pipeline
from ..pretrained.sampling import sample_pipeline
from .inputs import guarded


def as_checkpoint(model) -> Checkpoint:
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


@guarded
def sample(model: Checkpoint | str | Path, config: SampleConfig | None = None) -> torch.Tensor:
    """N×C×H×W samples in [-1, 1]; with `config.out` (and `out_array`) also the PNG grid (and a .npy array).

    `model` is a cfgdistill checkpoint or a diffusers pipeline folder (drawn by its stock class).
    """
    config = (config or SampleConfig()).validate()
    check_outputs(config)
    if not isinstance(model, Checkpoint) and is_pipeline(model):
        images, columns, _ = sample_pipeline(model, config)
        return write_samples(images, columns, config, cell=max(32, images.shape[-1]))
    checkpoint = as_checkpoint(model)
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
