"""Image grids as PNG files: samples in [-1, 1] become pixels, upscaled so that 8×8 digits are visible."""

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .io import atomic


def to_pixels(images: torch.Tensor, cell: int) -> list:
    """N×C×H×W in [-1, 1] -> PIL images of cell×cell pixels (nearest neighbour keeps pixels sharp)."""
    array = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    mode = "L" if array.shape[-1] == 1 else "RGB"
    return [
        Image.fromarray(a.squeeze(-1) if mode == "L" else a, mode).resize((cell, cell), Image.NEAREST) for a in array
    ]


def tile(images: torch.Tensor, ncol: int, cell: int = 32, pad: int = 2) -> Image.Image:
    """A grid of images, ncol per row."""
    tiles, mode = to_pixels(images, cell), "RGB" if images.shape[1] == 3 else "L"
    nrow = math.ceil(len(tiles) / ncol)
    canvas = Image.new(mode, (ncol * (cell + pad) + pad, nrow * (cell + pad) + pad), "white")
    for i, im in enumerate(tiles):
        canvas.paste(im.convert(mode), (pad + (i % ncol) * (cell + pad), pad + (i // ncol) * (cell + pad)))
    return canvas


def labelled_panels(panels: dict, row_labels: list, col_labels: list, cell: int = 32) -> Image.Image:
    """Side-by-side panels (title -> rows×cols×C×H×W tensor) with row and column captions."""
    font = ImageFont.load_default()
    margin, gap, head, pad = 60, 24, 36, 2
    cell = max(
        [cell] + [math.ceil(font.getlength(str(name))) + 6 for name in col_labels]
    )  # long class names stay apart
    grids = {title: tile(x.flatten(0, 1), x.shape[1], cell, pad) for title, x in panels.items()}
    width = margin + sum(g.width for g in grids.values()) + gap * (len(grids) - 1)
    height = head + max(g.height for g in grids.values())
    mode = "RGB" if any(g.mode == "RGB" for g in grids.values()) else "L"
    canvas = Image.new(mode, (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    x = margin
    for title, grid in grids.items():
        canvas.paste(grid, (x, head))
        draw.text((x, 2), title, fill="black", font=font)
        for j, name in enumerate(col_labels):
            centred = (cell - font.getlength(str(name))) / 2
            draw.text((x + pad + j * (cell + pad) + centred, head - 14), str(name), fill="black", font=font)
        x += grid.width + gap
    for i, name in enumerate(row_labels):
        draw.text((4, head + pad + i * (cell + pad) + cell // 3), str(name), fill="black", font=font)
    return canvas


def save_image(image: Image.Image, path) -> Path:
    with atomic(path) as tmp:
        image.save(tmp, format="PNG")
    return Path(path)


def write_array(images: torch.Tensor, path):
    """float32 N×C×H×W as .npy, written straight to `path` (callers make it atomic)."""
    with open(path, "wb") as handle:  # a handle, so numpy adds no suffix of its own
        np.save(handle, images.numpy().astype(np.float32))
