"""The student as a complete pipeline folder: the stock class (`StableDiffusionPipeline`, …) loads and runs it.

Every component but the network is the teacher's, hard-linked where the filesystem allows and copied
otherwise. The network is saved with its guidance input, LoRA merged; beside it `<network>_lora/` holds
the adapter alone (`pytorch_lora_weights.safetensors`) and the guidance input (`guidance_input.safetensors`).
"""

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..io import atomic
from .resolve import INDEX

RECORD = "cfgdistill_student.json"  # how the student was made; the stock classes ignore it
RUN_ENTRIES = {"checkpoints", "logs", ".cfgdistill.lock", RECORD}
GUIDANCE_INPUT = "guidance_input.safetensors"


def link_or_copy(source, target):
    """A hard link to the real file (a hub cache's snapshot holds symlinks), or a copy across filesystems."""
    real = os.path.realpath(source)
    try:
        os.link(real, target)
    except OSError:
        shutil.copy2(real, target)


def copy_entry(source: Path, target: Path):
    with atomic(target) as tmp:
        if source.is_dir():
            shutil.copytree(source, tmp, copy_function=link_or_copy)
        else:
            link_or_copy(source, tmp)


class PipelineStudent:
    """A distilled network and the teacher pipeline it came from; `save(out)` writes the student pipeline."""

    def __init__(self, teacher_folder: Path, network_dir: str, network, lora: bool, record: dict):
        self.teacher_folder, self.network_dir, self.network = Path(teacher_folder), network_dir, network
        self.lora, self.record = lora, record

    def save(self, out, overwrite: bool = True):
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        for entry in sorted(self.teacher_folder.iterdir()):
            if entry.name not in RUN_ENTRIES and entry.name != self.network_dir and not entry.name.startswith("."):
                copy_entry(entry, out / entry.name)
        if self.lora:
            self.save_adapter(out / f"{self.network_dir}_lora")
            self.network.fuse_lora()
            self.network.unload_lora()
        with atomic(out / self.network_dir) as tmp:
            self.network.save_pretrained(tmp)
        with atomic(out / RECORD) as tmp:
            tmp.write_text(json.dumps(self.record, indent=2) + "\n")
        assert (out / INDEX).is_file()

    def save_adapter(self, folder: Path):
        with atomic(folder) as tmp:
            self.network.save_lora_adapter(tmp, weight_name="pytorch_lora_weights.safetensors")
            cond_proj = self.network.time_embedding.cond_proj.weight
            save_file({"time_embedding.cond_proj.weight": cond_proj.detach().cpu().contiguous()}, tmp / GUIDANCE_INPUT)


def load_student_adapter(unet, folder):
    """The teacher's `unet` (in place) made the student from `<out>/unet_lora`: guidance input, then LoRA."""
    from ..networks.stock_unet import add_guidance_input

    weight = load_file(Path(folder) / GUIDANCE_INPUT)["time_embedding.cond_proj.weight"]
    add_guidance_input(unet, weight.shape[1])
    with torch.no_grad():
        unet.time_embedding.cond_proj.weight.copy_(weight)
    unet.load_lora_adapter(str(folder), weight_name="pytorch_lora_weights.safetensors", prefix=None)
    return unet
