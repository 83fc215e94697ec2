"""`--images DIR`: a user's images in the pipeline's latent space, through its own VAE and scaling factor."""

from pathlib import Path

import numpy as np
import torch

from ..data import ImageDataset
from ..data.datasets import IMAGE_SUFFIXES, open_image
from ..errors import UserError

ENCODE_BATCH = 16


def image_files(root) -> list:
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"--images {root}: no such folder")
    files = sorted(f for f in root.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith("."))
    if not files:
        raise UserError(f"--images {root} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def pixels(files: list, size: int, channels: int) -> torch.Tensor:
    """N×C×size×size in [−1, 1], each image centre-cropped and resized to the pipeline's resolution."""
    from PIL import ImageOps

    mode = {1: "L", 3: "RGB"}.get(channels)
    if mode is None:
        raise UserError(f"the pipeline's VAE takes {channels}-channel images; cfgdistill reads 1 or 3 channels")
    arrays = [np.asarray(ImageOps.fit(open_image(f).convert(mode), (size, size)), dtype=np.float32) for f in files]
    x = torch.from_numpy(np.stack(arrays).reshape(len(files), size, size, channels)).permute(0, 3, 1, 2)
    return x.contiguous() / 127.5 - 1.0


@torch.no_grad()
def load_latents(pipe, root, size: int, num_prompts: int, seed: int = 0) -> ImageDataset:
    """The images as latents, (vae(x) − shift) · scale; each is later paired with a random prompt."""
    vae = pipe.vae
    x = pixels(image_files(root), size, vae.config.in_channels)
    generator = torch.Generator().manual_seed(seed)
    latents = []
    for batch in x.split(ENCODE_BATCH):
        dist = vae.encode(batch.to(vae.device, vae.dtype)).latent_dist
        latents.append(dist.sample(generator=generator).float().cpu())
    z = (torch.cat(latents) - (vae.config.get("shift_factor") or 0.0)) * vae.config.scaling_factor
    return ImageDataset(str(Path(root).resolve()), z, torch.arange(len(z)) % num_prompts, ["images"])
