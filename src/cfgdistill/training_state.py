"""Resumable training state: safetensors plus JSON, written to a temporary folder and renamed into place.

A checkpoint is `checkpoints/step-NNNNNNN/` holding `state.safetensors`, `state.json` and, written last,
`COMPLETE`. Nothing here unpickles, so a checkpoint from a stranger cannot run code.
"""

import json
import os
import re
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import UserError

TENSORS, META, MARKER = "state.safetensors", "state.json", "COMPLETE"
STATE_FORMAT = "cfgdistill-training-state"
STATE_VERSION = 1
STEP_DIR = re.compile(r"step-(\d+)")


def checkpoint_root(out) -> Path:
    return Path(out) / "checkpoints"


def clear_run(out):
    """Remove an earlier run's checkpoints and TensorBoard logs from a folder that a new run replaces."""
    for stale in (checkpoint_root(out), Path(out) / "logs"):
        shutil.rmtree(stale, ignore_errors=True)


def _write(path: Path, write):
    """Write a file and flush it to disk before anything that depends on it."""
    write(path)
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def save_state(out, step: int, tensors: dict, meta: dict, total_limit: int | None = None) -> Path:
    """Write the state for `step`; keep at most `total_limit` complete checkpoints, dropping the oldest."""
    root = checkpoint_root(out)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:07d}"
    tmp = root / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    meta = {"format": STATE_FORMAT, "version": STATE_VERSION, "step": step, **meta}
    _write(tmp / TENSORS, lambda p: save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, p))
    _write(tmp / META, lambda p: p.write_text(json.dumps(meta, indent=2) + "\n"))
    _write(tmp / MARKER, lambda p: p.write_text(f"{step}\n"))
    if final.exists():  # a rerun of a step after resuming from an earlier one
        old = root / f".{final.name}.old-{os.getpid()}"
        final.rename(old)
        shutil.rmtree(old)
    tmp.rename(final)
    if total_limit:
        complete, _ = scan(out)
        for stale in complete[:-total_limit]:
            shutil.rmtree(stale, ignore_errors=True)
    return final


def is_complete(path: Path) -> bool:
    return STEP_DIR.fullmatch(path.name) is not None and (path / MARKER).is_file()


def scan(out) -> tuple:
    """(complete checkpoints, oldest first; incomplete ones: leftovers of a crash or a partial copy)."""
    root = checkpoint_root(out)
    if not root.is_dir():
        return [], []
    entries = sorted(root.iterdir())
    complete = sorted((p for p in entries if is_complete(p)), key=lambda p: int(STEP_DIR.fullmatch(p.name)[1]))
    incomplete = [p for p in entries if p not in complete]
    return complete, incomplete


def load_state(path) -> tuple:
    """(tensors, meta) of one complete checkpoint; anything wrong with it is a one-line UserError."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"checkpoint {path} does not exist")
    if not (path / MARKER).is_file():
        raise UserError(f"checkpoint {path} is incomplete (no {MARKER} marker); it was not finished when written")
    try:
        meta = json.loads((path / META).read_text())
        tensors = load_file(path / TENSORS)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, SafetensorError) as error:
        raise UserError(f"checkpoint {path} is damaged: {str(error).splitlines()[0]}") from None
    if not isinstance(meta, dict) or meta.get("format") != STATE_FORMAT or meta.get("version") != STATE_VERSION:
        raise UserError(f"{path} is not a cfgdistill training checkpoint of version {STATE_VERSION}")
    return tensors, meta


def capture(model, ema, optimizer, lr_schedule, objective) -> tuple:
    """Everything a bitwise-identical continuation needs, as (tensors, JSON-able meta)."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"objective.{k}": v.contiguous() for k, v in objective.state_dict().items()})
    ema_meta = ema.state_dict()
    tensors.update({f"ema.{i}": p for i, p in enumerate(ema_meta.pop("shadow_params"))})
    optimizer_state = optimizer.state_dict()
    scalars = {}
    for index, entries in optimizer_state["state"].items():
        for key, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{index}.{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        tensors.update({f"rng.cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    schedule_state = {k: v for k, v in lr_schedule.state_dict().items() if k != "lr_lambdas"}
    meta = {
        "ema": ema_meta,
        "optimizer": {"param_groups": optimizer_state["param_groups"], "scalars": scalars},
        "lr_schedule": schedule_state,
    }
    return tensors, meta


def restore(tensors: dict, meta: dict, model, ema, optimizer, lr_schedule, path, objective):
    """The inverse of capture(); a network of another shape is refused with the checkpoint's path."""
    part = lambda prefix: {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    try:
        model.load_state_dict(part("model."))
        shadow = [tensors[f"ema.{i}"] for i in range(len(part("ema.")))]
        ema.load_state_dict({**meta["ema"], "shadow_params": shadow})
        state = {}
        for key, value in part("optimizer.").items():
            index, name = key.split(".", 1)
            state.setdefault(int(index), {})[name] = value
        for index, scalars in meta["optimizer"]["scalars"].items():
            state.setdefault(int(index), {}).update(scalars)
        optimizer.load_state_dict({"state": state, "param_groups": meta["optimizer"]["param_groups"]})
        lr_schedule.load_state_dict({**meta["lr_schedule"], "lr_lambdas": [None] * len(optimizer.param_groups)})
        objective.load_state_dict(part("objective."))
    except (RuntimeError, KeyError, ValueError, TypeError) as error:
        raise UserError(f"checkpoint {path} does not fit this network: {str(error).strip().splitlines()[0]}") from None
    torch.set_rng_state(tensors["rng.torch"])
    cuda_states = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda_states)
