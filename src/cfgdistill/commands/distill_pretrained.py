"""`distill --teacher PIPELINE --prompts FILE`: a pretrained diffusers pipeline distilled from prompts alone.

The student comes back as a pipeline folder that the stock class runs in one pass per step (pretrained/).
"""

import hashlib
import json
from dataclasses import asdict, replace
from pathlib import Path

import torch

from ..config import DistillConfig, PipelineOptions, RunOptions
from ..data import ImageDataset
from ..errors import UserError
from ..guidance import distillable_rule
from ..objectives import GuidanceDistillation
from ..pretrained.export import PipelineStudent
from ..pretrained.families import FAMILIES
from ..pretrained.images import load_latents
from ..pretrained.prompts import PromptConditioning, read_prompts
from ..pretrained.resolve import family_of, resolve_pipeline
from ..training.loop import fit
from ..training.precision import AUTO, gpu_precision
from ..training.run_folder import RunFolder

# Without images, half of each batch on the teacher's paths and half its noised samples: on the Fashion-MNIST
# pipeline, paths alone missed the accuracy gate at s = 2 and 3 and the half-and-half mix passed everywhere
# (docs/pipelines.md).
PROMPTS_ONLY_FRACTION = 0.5


def teacher_id(folder: Path, parts: tuple) -> str:
    """Names a pipeline's `parts` (folders by prefix) and its index by each file's size and mtime: what the
    prompt cache is keyed by (the text side), and what a resume must find unchanged (the network too)."""
    digest = hashlib.sha256(str(folder.resolve()).encode())
    for path in [folder / "model_index.json", *sorted(folder.glob("*/*"))]:
        if path.parent == folder or path.parent.name.startswith(parts):
            stat = path.stat()
            digest.update(f"{path.relative_to(folder)} {stat.st_size} {stat.st_mtime_ns}".encode())
    return digest.hexdigest()


TEXT_PARTS = ("text_encoder", "tokenizer")


def prompts_id(prompts: list) -> str:
    """What a resume must find unchanged in the prompts: their number and a hash of their text."""
    return f"{len(prompts)} prompts, sha256 {hashlib.sha256(chr(10).join(prompts).encode()).hexdigest()[:16]}"


def check_options(config: DistillConfig, options: PipelineOptions):
    if config.loss_space == "guidance" and options.images is None:
        raise UserError("loss-space guidance measures the teacher on images: pass --images, or use prediction or eps")
    if config.data is not None:
        raise UserError("a pipeline teacher takes --prompts (and optionally --images), not --data")


def distill_pipeline(
    ref, config: DistillConfig, options: PipelineOptions, run: RunOptions | None = None
) -> PipelineStudent:
    """Distill the pipeline at `ref` (a folder, or a hub id in the local cache) on `options.prompts`."""
    config.validate(), options.validate()
    if options.images is None and config.trajectory_fraction == 0:  # DistillConfig's default, for image data
        config = replace(config, trajectory_fraction=PROMPTS_ONLY_FRACTION)
    run = run or RunOptions()
    folder = resolve_pipeline(ref)
    name, network_dir, _ = family_of(folder)
    family, prompts = FAMILIES[name], read_prompts(options.prompts)
    check_options(config, options)
    if config.guider != "cfg" or config.guider_option:
        raise UserError("a pipeline's student learns cfg, the rule of its stock class; --guider is for checkpoints")
    rule = distillable_rule(config.guider)
    with RunFolder(run) as run_folder:
        pipe = family.load(folder)
        size = options.resolution or family.resolution(pipe)
        text_id = f"{teacher_id(folder, TEXT_PARTS)} {size}"
        conditioning = PromptConditioning.encode(family, pipe, prompts, size, text_id)
        data = load_latents(pipe, options.images, size, len(prompts)) if options.images else prompt_set(prompts)
        for component in [c for c in pipe.components if c.startswith(("text_encoder", "tokenizer"))]:
            setattr(pipe, component, None)  # the prompts are encoded: free the encoders
        process = family.process(pipe, size)
        precision = gpu_precision(run) if config.mixed_precision == AUTO else config.mixed_precision
        half = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)  # the frozen base, stored in half
        null, layout = conditioning.null, conditioning.layout
        teacher, student = family.networks(pipe, null, layout, size, options.lora_rank, half)
        if options.gradient_checkpointing:
            student.network.enable_gradient_checkpointing()
        torch.manual_seed(config.seed)
        objective = GuidanceDistillation(teacher, process, conditioning, config, rule, data)
        identity = {"teacher": teacher_id(folder, (*TEXT_PARTS, network_dir)), "prompts": prompts_id(prompts)}
        identity["pipeline"] = asdict(options) | {"prompts": None}  # the file's name may change, its text not
        fit(student, objective, data, config, run, json.loads(json.dumps(identity, default=str)))
        record = {"teacher": str(ref), "family": name, "prompts": prompts, "distill": asdict(config)}
        record["pipeline"] = json.loads(json.dumps(asdict(options), default=str))
        result = PipelineStudent(folder, network_dir, student.network.cpu(), bool(options.lora_rank), record)
        run_folder.save(result)
    return result


def prompt_set(prompts: list) -> ImageDataset:
    """No images: the loop only counts rows; the objective draws every row from the teacher."""
    return ImageDataset("prompts", None, torch.arange(len(prompts)), list(prompts))
