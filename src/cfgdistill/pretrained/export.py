"""The student as a complete pipeline folder: the stock class (`StableDiffusionPipeline`, …) loads and runs it.

Every component but the network is the teacher's, hard-linked where the filesystem allows and copied
otherwise. The network is saved with its guidance input, LoRA merged; beside it `<network>_lora/` holds
the adapter alone (`pytorch_lora_weights.safetensors`) and the guidance input (`guidance_input.safetensors`).
"""

import json
import os
import shutil
from pathlib import Path

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
            self.network.float()  # a half-precision base is merged and saved in float32
            self.network.fuse_lora()
            self.network.unload_lora()
        with atomic(out / self.network_dir) as tmp:
            self.network.save_pretrained(tmp)
        with atomic(out / RECORD) as tmp:
            tmp.write_text(json.dumps(self.record, indent=2) + "\n")
        assert (out / INDEX).is_file()

    def save_adapter(self, folder: Path):
        """The LoRA weights in diffusers' format, and the trained weights outside LoRA: the guidance input."""
        guidance = {k: p.detach().cpu().contiguous() for k, p in self.network.named_parameters() if is_guidance(k, p)}
        with atomic(folder) as tmp:
            self.network.save_lora_adapter(tmp, weight_name="pytorch_lora_weights.safetensors")
            save_file(guidance, tmp / GUIDANCE_INPUT)


def is_guidance(name: str, parameter) -> bool:
    return parameter.requires_grad and "lora_" not in name


def load_student_adapter(network, folder):
    """The teacher's network (in place) made the student from `<out>/<network>_lora`: guidance input, then LoRA."""
    from ..networks.stock_flux import add_guidance_embedder
    from ..networks.stock_unet import add_guidance_input

    weights = load_file(Path(folder) / GUIDANCE_INPUT)
    if "time_embedding.cond_proj.weight" in weights:
        add_guidance_input(network, weights["time_embedding.cond_proj.weight"].shape[1])
    else:
        add_guidance_embedder(network)
    missing, unexpected = network.load_state_dict(weights, strict=False)
    if unexpected or len(missing) != len(network.state_dict()) - len(weights):
        raise ValueError(f"{folder} does not fit this network: {unexpected[:3]}")
    network.load_lora_adapter(str(folder), weight_name="pytorch_lora_weights.safetensors", prefix=None)
    return network
