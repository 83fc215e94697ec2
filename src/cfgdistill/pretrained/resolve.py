"""Where a pipeline teacher lives, which family it is, and whether it can be distilled at all."""

import json
from pathlib import Path

from ..errors import UserError
from .folder import INDEX, check_folder, read_config

# pipeline class -> (family, the network's folder, its config field that marks a guidance-distilled network)
SUPPORTED = {
    "StableDiffusionPipeline": ("sd", "unet", "time_cond_proj_dim"),
    "StableDiffusionXLPipeline": ("sdxl", "unet", "time_cond_proj_dim"),
    "FluxPipeline": ("flux", "transformer", "guidance_embeds"),
}


def is_pipeline(ref) -> bool:
    """Whether `ref` is a diffusers pipeline folder: it has model_index.json."""
    return (Path(ref) / INDEX).is_file()


def resolve_pipeline(ref) -> Path:
    """The local folder of a pipeline: `ref` itself, or the hub id's snapshot in the local Hugging Face cache."""
    path = Path(ref)
    if path.is_dir():
        if not (path / INDEX).is_file():
            raise UserError(f"{path} is not a diffusers pipeline: it has no {INDEX}")
        return path
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:  # never a download: the cache only, whatever HF_HUB_OFFLINE says
        return Path(snapshot_download(str(ref), local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        raise UserError(
            f"{ref} is neither a pipeline folder nor a model in the local Hugging Face cache ({constants.HF_HUB_CACHE})"
        ) from None


def read_index(folder: Path) -> dict:
    return read_config(folder / INDEX)


def family_of(folder: Path, students: bool = False) -> tuple:
    """(family, network folder, whether it is guidance-distilled) of a supported pipeline whose folder passes
    `check_folder`; a distilled one is refused unless `students`; anything else is a one-line refusal."""
    index = read_index(folder)
    name = index.get("_class_name")
    if not isinstance(name, str) or name not in SUPPORTED:
        shown = name if isinstance(name, str) else json.dumps(name)[:40]
        raise UserError(f"{folder} holds a {shown}; cfgdistill distills {', '.join(SUPPORTED)}")
    family, network, marker = SUPPORTED[name]
    check_folder(folder, index, family)
    config = read_config(folder / network / "config.json")
    if config.get(marker) and not students:
        raise UserError(
            f"{folder} is already guidance-distilled (its {network} sets {marker}); distill its undistilled teacher"
        )
    return family, network, bool(config.get(marker))
