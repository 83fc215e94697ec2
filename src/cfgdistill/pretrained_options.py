"""`distill`'s settings for a pretrained diffusers pipeline as the teacher. This module imports no torch."""

from dataclasses import dataclass
from pathlib import Path

from .settings import IMAGE_SIZE, PATH, POSITIVE, SWITCH, Settings, setting


@dataclass
class PipelineOptions(Settings):
    """Prompts (and optionally images) to distill a pipeline on, and how its network is trained."""

    prompts: Path | None = setting(None, "pipeline teachers: a text file with one training prompt per line", PATH)
    images: Path | None = setting(
        None, "pipeline teachers: a folder of images to noise as well (default: only the teacher's own paths)", PATH
    )
    lora_rank: int | None = setting(
        None, "pipeline teachers: train LoRA adapters of this rank on one shared copy of the network", POSITIVE
    )
    resolution: int | None = setting(
        None, "pipeline teachers: image side in pixels to distill at (default: the pipeline's own)", IMAGE_SIZE
    )
    gradient_checkpointing: bool = setting(False, "pipeline teachers: recompute activations to save memory", SWITCH)
