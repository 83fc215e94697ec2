"""Checkpoints: a folder in diffusers' save_pretrained layout plus `cfgdistill.json`. Loading reads JSON and safetensors only."""

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from diffusers import DDPMScheduler
from diffusers.utils import logging as diffusers_logging

from .errors import UserError
from .models import Denoiser

META_FILE = "cfgdistill.json"
FORMAT_VERSION = 1
KINDS = ("teacher", "student")
CONVENTION = "s: pred = uncond + s*(cond - uncond); s=0 unconditional, s=1 conditional (w = s - 1 in Meng et al.)"


@dataclass
class Checkpoint:
    model: Denoiser
    noise_schedule: DDPMScheduler
    meta: dict

    @classmethod
    def create(cls, model, noise_schedule, *, kind, dataset, training, conditioning=None) -> "Checkpoint":
        """`conditioning` (class or text, from conditioning.py) defaults to class labels."""
        meta = {
            "format": "cfgdistill",
            "version": FORMAT_VERSION,
            "kind": kind,
            "prediction_type": noise_schedule.config.prediction_type,
            "guidance": {"convention": CONVENTION, "trained_range": model.config.guidance_range},
            "data": {"name": dataset.name, "image_shape": list(dataset.image_shape), "train_images": len(dataset)},
            "conditioning": {
                "num_classes": dataset.num_classes,
                "class_names": list(dataset.class_names),
                **(conditioning.meta() if conditioning is not None else {"type": "class", "null_class": dataset.num_classes}),
            },
            "training": training,
        }
        return cls(model, noise_schedule, meta)

    @property
    def kind(self) -> str:
        return self.meta["kind"]

    @property
    def num_classes(self) -> int:
        return self.meta["conditioning"]["num_classes"]

    def save(self, path, overwrite: bool = False) -> Path:
        """Write the parts into a temporary folder, then move them in with cfgdistill.json last.

        A folder is a checkpoint only once cfgdistill.json is there, so a crash never leaves a loadable half.
        Other entries of the folder (a run's checkpoints/ and logs/) are kept.
        """
        path = Path(path)
        check_output_dir(path, overwrite)
        path.mkdir(parents=True, exist_ok=True)
        tmp = path / f".model.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        self.model.save_pretrained(tmp / "denoiser")
        self.noise_schedule.save_pretrained(tmp / "scheduler")
        (tmp / META_FILE).write_text(json.dumps(self.meta, indent=2) + "\n")
        (path / META_FILE).unlink(missing_ok=True)
        for part in ("denoiser", "scheduler"):
            shutil.rmtree(path / part, ignore_errors=True)
            (tmp / part).rename(path / part)
        (tmp / META_FILE).rename(path / META_FILE)
        tmp.rmdir()
        return path


def check_output_dir(path, overwrite: bool = False):
    """Refuse, before any work is done, an output folder that holds something or cannot be written."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"output {path} exists and is not a folder")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise UserError(f"output folder {path} is not empty; pass --overwrite to replace it")
    probe_writable(path if path.is_dir() else nearest_existing(path.resolve().parent), path)


def nearest_existing(path: Path) -> Path:
    while not path.exists():
        path = path.parent
    return path


def probe_writable(folder: Path, output: Path):
    """Create and remove a file where the output will go: the only test that also holds for root and read-only mounts."""
    if not folder.is_dir():
        raise UserError(f"output folder {output} cannot be written: {folder} is not a folder")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".cfgdistill-probe-"):
            pass
    except OSError as error:
        raise UserError(f"output folder {output} cannot be written: {error.strerror}") from None


def load_checkpoint(path) -> Checkpoint:
    """Load a teacher or a student; any problem becomes a one-line UserError."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"checkpoint folder {path} does not exist")
    meta_path = path / META_FILE
    if not meta_path.is_file():
        raise UserError(f"{path} is not a cfgdistill checkpoint (no {META_FILE})")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{meta_path} is not valid JSON: {error}") from None
    if not isinstance(meta, dict) or meta.get("format") != "cfgdistill":
        raise UserError(f"{meta_path} does not describe a cfgdistill checkpoint")
    if meta.get("version") != FORMAT_VERSION:
        raise UserError(f"{path} has checkpoint format version {meta.get('version')}; this cfgdistill reads {FORMAT_VERSION}")
    if meta.get("kind") not in KINDS:
        raise UserError(f"{meta_path}: kind must be one of {', '.join(KINDS)}, got {meta.get('kind')!r}")
    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # misfitting weights are refused below in one line, not warned about
    try:
        model, info = Denoiser.from_pretrained(path / "denoiser", use_safetensors=True, output_loading_info=True)  # never a pickled .bin
        noise_schedule = DDPMScheduler.from_pretrained(path / "scheduler")
    except Exception as error:  # diffusers raises many types for missing or damaged files
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"cannot load the network in {path}: {first_line}") from None
    finally:
        diffusers_logging.set_verbosity(verbosity)
    misfits = sorted(set(info["missing_keys"]) | set(info["unexpected_keys"]) | {str(m[0]) for m in info["mismatched_keys"]})
    if misfits:  # diffusers would leave these weights random (or on the meta device) and only warn
        raise UserError(f"the weights in {path} do not fit this version's network ({', '.join(misfits[:4])}); "
                        "it was written by another cfgdistill version: retrain it")
    model.eval()
    if model.config.guidance_embedding != (meta["kind"] == "student"):
        raise UserError(f"{path}: the network does not match its kind {meta['kind']!r}")
    if noise_schedule.config.prediction_type != meta.get("prediction_type"):
        raise UserError(f"{path}: the scheduler's prediction type does not match {META_FILE}")
    return Checkpoint(model, noise_schedule, meta)
