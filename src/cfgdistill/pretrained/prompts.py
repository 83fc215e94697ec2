"""The prompts a pipeline is distilled on: read from a file, encoded once by the pipeline's own text encoders.

The table is cached (in $CFGDISTILL_CACHE, default ~/.cache/cfgdistill), keyed by the prompts, the teacher's
text encoders and the resolution, so a resumed or repeated run neither re-encodes them nor needs those
encoders. An entry is checked before use (its key, shape and values); a damaged one is rebuilt.
"""

import hashlib
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..conditioning import drop
from ..errors import UserError
from ..io import WRITE_ERRORS, atomic, cache_dir, why


def cache_file(key: str) -> Path:
    return cache_dir().expanduser() / "prompts" / f"{key}.safetensors"


def read_prompts(path) -> list:
    """One prompt per line; blank lines are skipped, and a file with none is refused."""
    if path is None:
        raise UserError("a pipeline teacher is distilled on prompts: pass --prompts FILE (one prompt per line)")
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read the prompts file {path}: {str(error).splitlines()[0]}") from None
    prompts = [line.strip() for line in lines if line.strip()]
    if not prompts:
        raise UserError(f"the prompts file {path} holds no prompt (only blank lines)")
    return prompts


def read_cache(path: Path, key: str, count: int):
    """(rows, null, layout) of a cache entry made for `key` from `count` prompts; None, with a one-line note,
    for one that is damaged or was made for other prompts (it is then rebuilt, never used)."""
    try:
        tensors = load_file(path)
        problem = None if tensors["key"].numpy().tobytes().decode() == key else "it was made for other prompts"
        rows, null = tensors["rows"], tensors["null"]
        if rows.ndim < 2 or len(rows) != count or tuple(null.shape) != tuple(rows.shape[1:]):
            problem = problem or f"its rows are {tuple(rows.shape)} for {count} prompts"
        elif not (rows.is_floating_point() and torch.isfinite(rows).all() and torch.isfinite(null).all()):
            problem = "its rows are not finite numbers"
        layout = {k[len("layout.") :]: int(v) for k, v in tensors.items() if k.startswith("layout.")}
    except (OSError, KeyError, UnicodeDecodeError, RuntimeError, SafetensorError, ValueError) as error:
        problem = why(error)
    if problem:
        warnings.warn(f"the prompt cache {path} is not usable ({problem}); encoding the prompts again", stacklevel=2)
        return None
    return rows, null, layout


class PromptConditioning:
    """Each row draws one of the prompts uniformly (with `classes`, the prompt→class map sorted by class: one
    of its label's prompts); dropout gives it the pipeline's unconditional row."""

    kind = "prompts"

    def __init__(self, prompts: list, rows: torch.Tensor, null: torch.Tensor, layout: dict, classes=None):
        self.prompts, self.rows, self.null, self.layout = list(prompts), rows, null, dict(layout)
        self.classes = classes
        if classes is not None:
            self.counts = torch.bincount(classes)
            self.offsets = torch.cumsum(self.counts, 0) - self.counts

    @classmethod
    def encode(cls, family, pipe, prompts: list, size: int, teacher_id: str) -> "PromptConditioning":
        """Encode with `family.encode(pipe, prompts, size)`, or reuse the cached table of the same prompts."""
        key = hashlib.sha256("\n".join([teacher_id, *prompts]).encode()).hexdigest()[:32]
        cache = cache_file(key)
        if cache.is_file():
            cached = read_cache(cache, key, len(prompts))
            if cached is not None:
                return cls(prompts, *cached)
        rows, null, layout = family.encode(pipe, prompts, size)
        tensors = {"rows": rows, "null": null, "key": torch.frombuffer(bytearray(key.encode()), dtype=torch.uint8)}
        tensors |= {f"layout.{k}": torch.tensor(v) for k, v in layout.items()}
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            with atomic(cache) as tmp:
                save_file(tensors, tmp)
        except WRITE_ERRORS:
            pass  # the cache only saves time
        return cls(prompts, rows, null, layout)

    @property
    def num_classes(self) -> int:
        return len(self.prompts)

    def draw(self, labels: torch.Tensor, generator: torch.Generator, p_uncond: float) -> torch.Tensor:
        if self.classes is None:
            pick = torch.randint(0, len(self.prompts), labels.shape, generator=generator)
        else:
            pick = self.offsets[labels] + (torch.rand(labels.shape, generator=generator) * self.counts[labels]).long()
        return drop(self.rows[pick], self.null, p_uncond, generator)

    def for_classes(self, labels) -> torch.Tensor:
        return self.rows[torch.as_tensor(labels)]
