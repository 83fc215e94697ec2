"""A pretrained diffusers pipeline as the teacher of `distill` (commands/distill.py), from prompts alone."""

import hashlib
import json
from dataclasses import asdict, replace
from pathlib import Path

import torch

from ..config import DistillConfig, PipelineOptions, RunOptions
from ..data import ImageDataset
from ..errors import UserError
from ..objectives.guidance_distillation import GUIDANCE_WEIGHTING
from ..pretrained.export import PipelineStudent
from ..pretrained.families import FAMILIES
from ..pretrained.images import load_latents
from ..pretrained.prompts import PromptConditioning, read_prompts
from ..pretrained.resolve import family_of, resolve_pipeline
from ..training.precision import AUTO, gpu_precision
from .session import Session

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


class PipelineTeacher:
    """A diffusers pipeline (a folder, or a hub id in the local cache), distilled on `options.prompts`; its
    student comes back as a pipeline folder that the stock class runs in one pass per step."""

    def __init__(self, ref, options: PipelineOptions, dataset=None):
        if dataset is not None:
            raise UserError("a pipeline teacher takes --prompts (and optionally --images), not a dataset")
        self.ref, self.options = ref, options.validate()
        self.folder = resolve_pipeline(ref)
        self.name, self.network_dir, _ = family_of(self.folder)
        self.family, self.prompts = FAMILIES[self.name], read_prompts(options.prompts)

    def check(self, config: DistillConfig, rule) -> DistillConfig:
        """What a pipeline's student cannot do, refused; without images, half the rows on the teacher's paths."""
        if config.negatives:
            raise UserError("--negatives trains our UNet's negative input; a diffusers pipeline's network has none")
        if config.data is not None:
            raise UserError("a pipeline teacher takes --prompts (and optionally --images), not --data")
        if config.guider != "cfg" or config.guider_option:
            raise UserError("a pipeline's student learns cfg, the rule of its stock class; --guider is for checkpoints")
        if self.options.images is None and config.trajectory_fraction == 0:  # DistillConfig's default, for images
            config = replace(config, trajectory_fraction=PROMPTS_ONLY_FRACTION)
        return config

    def open(self, config: DistillConfig, run: RunOptions, rule) -> Session:
        options, family, prompts = self.options, self.family, self.prompts
        pipe = family.load(self.folder)
        size = options.resolution or family.resolution(pipe)
        text_id = f"{teacher_id(self.folder, TEXT_PARTS)} {size}"
        conditioning = PromptConditioning.encode(family, pipe, prompts, size, text_id)
        data = load_latents(pipe, options.images, size, len(prompts)) if options.images else prompt_set(prompts)
        for component in [c for c in pipe.components if c.startswith(("text_encoder", "tokenizer"))]:
            setattr(pipe, component, None)  # the prompts are encoded: free the encoders
        process = family.process(pipe, size)
        precision = gpu_precision(run) if config.mixed_precision == AUTO else config.mixed_precision
        half = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)  # the frozen base, stored in half
        teacher, student = family.networks(pipe, conditioning.null, conditioning.layout, size, options.lora_rank, half)
        if options.gradient_checkpointing:
            student.network.enable_gradient_checkpointing()
        torch.manual_seed(config.seed)
        identity = {"teacher": teacher_id(self.folder, (*TEXT_PARTS, self.network_dir)), "prompts": prompts_id(prompts)}
        identity["pipeline"] = asdict(options) | {"prompts": None}  # the file's name may change, its text not
        if config.loss_space == "guidance":  # measured on the images, or without them on the teacher's samples
            identity["guidance_weighting"] = GUIDANCE_WEIGHTING
        return Session(teacher, student, process, conditioning, data, json.loads(json.dumps(identity, default=str)))

    def export(self, session: Session, config: DistillConfig, rule) -> PipelineStudent:
        record = {"teacher": str(self.ref), "family": self.name, "prompts": self.prompts, "distill": asdict(config)}
        record["pipeline"] = json.loads(json.dumps(asdict(self.options), default=str))
        network = session.student.network.cpu()
        return PipelineStudent(self.folder, self.network_dir, network, bool(self.options.lora_rank), record)


def prompt_set(prompts: list) -> ImageDataset:
    """No images: the loop only counts rows; the objective draws every row from the teacher."""
    return ImageDataset("prompts", None, torch.arange(len(prompts)), list(prompts))
