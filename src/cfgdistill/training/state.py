"""A run's state on disk: resumable checkpoints, which one to resume, resume checks and stop signals.

A checkpoint is `checkpoints/step-NNNNNNN/` holding `state.safetensors`, `state.json` and `COMPLETE`,
written as one folder and renamed into place. Nothing here unpickles, so a checkpoint from a stranger
cannot run code.
"""

import json
import re
import shutil
import signal
import threading
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .. import schema
from ..errors import UserError
from ..io import atomic

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


def save_state(out, step: int, tensors: dict, meta: dict, total_limit: int | None = None) -> Path:
    """Write the state for `step`; keep at most `total_limit` complete checkpoints, dropping the oldest."""
    root = checkpoint_root(out)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:07d}"
    meta = {"format": STATE_FORMAT, "version": STATE_VERSION, "step": step, **meta}
    with atomic(final) as tmp:  # replaces a step rerun after resuming from an earlier one
        tmp.mkdir()
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp / TENSORS)
        (tmp / META).write_text(json.dumps(meta, indent=2) + "\n")
        (tmp / MARKER).write_text(f"{step}\n")
    if total_limit:
        complete, _ = scan(out)
        for stale in complete[:-total_limit]:
            shutil.rmtree(stale, ignore_errors=True)
    return final


def kept_note(out) -> str:
    """What a failed run still has: its last complete checkpoint, or none."""
    complete, _ = scan(out) if out is not None else ([], [])
    return f"the last complete checkpoint, {complete[-1]}, is intact" if complete else "no checkpoint was written"


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
    schema.check(path / META, meta, schema.STATE)
    schema.check(path / META, meta["optimizer"], schema.OPTIMIZER)
    return tensors, meta


def capture(model, ema, optimizer, lr_schedule, objective) -> tuple:
    """Everything a bitwise-identical continuation needs, as (tensors, JSON-able meta)."""
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    tensors = {f"model.{k}": v for k, v in model.state_dict().items() if k not in frozen}
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
        load_trained(model, part("model."))
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
    except (RuntimeError, KeyError, ValueError, TypeError, AttributeError, IndexError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"checkpoint {path} does not fit this network: {reason}") from None
    torch.set_rng_state(tensors["rng.torch"])
    cuda_states = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda_states)


def load_trained(model, tensors: dict):
    """Load what capture() stored; only frozen parameters, which it leaves out, may be missing."""
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if unexpected or set(missing) - frozen:
        raise RuntimeError(f"missing {sorted(set(missing) - frozen)[:3]}, unexpected {sorted(unexpected)[:3]}")


def find_resume(run, log) -> tuple | None:
    """(path, tensors, meta) of the checkpoint a run continues from, or None for a new run.

    `resume` names a checkpoint, or "latest": the newest complete one that loads; damaged ones are skipped
    with a line saying which and why.
    """
    if run.resume is None:
        return None
    if run.resume != "latest":
        return (Path(run.resume), *load_state(run.resume))
    if run.out is None:
        raise UserError("resume latest needs a run folder to look in")
    complete, incomplete = scan(run.out)
    for path in incomplete:
        log(f"skipping incomplete checkpoint {path}")
    for path in reversed(complete):
        try:
            return (path, *load_state(path))
        except UserError as error:
            log(f"skipping checkpoint {path}: {error}")
    log(f"no loadable checkpoint in {checkpoint_root(run.out)}; starting a new run")
    return None


# distill settings measured as giving nothing and removed (docs/distillation.md), each at its value when off
RETIRED_SETTINGS = {
    "guidance_gate": "none",
    "negative_input": "additive",
    "composed_negatives": 0.0,
    "s_draws": 1,
    "new_lr_scale": 1.0,
    "stop_when_matched": 0,
}


def check_same_run(meta: dict, kind: str, recipe: dict, path, defaults: dict | None = None):
    """Refuse to continue a checkpoint of another kind or other settings, naming the first setting that differs.

    A setting the checkpoint lacks was added after it was written; it ran as that setting's default (`defaults`).
    A retired setting at the value it had when off is dropped; at any other value the run cannot go on. The
    recipe's name is a label: its values are compared one by one.
    """
    if meta.get("kind") != kind:
        raise UserError(f"cannot resume {path}: it holds a {meta.get('kind')} run, this run trains a {kind}")
    saved, recipe = dict(meta.get("recipe", {})), json.loads(json.dumps(recipe))  # tuples compare as JSON lists
    for key, off in RETIRED_SETTINGS.items():
        if key in saved and saved.pop(key) != off:
            raise UserError(f"cannot resume {path}: it was written with {key}, a setting cfgdistill no longer has")
    saved = json.loads(json.dumps(defaults or {})) | saved
    keys = (set(saved) | set(recipe)) - {"recipe"}
    for key in sorted(keys, key=lambda k: (k not in ("teacher", "guide"), k)):  # another model is said first
        old, new = saved.get(key, "<absent>"), recipe.get(key, "<absent>")
        if old != new:
            raise UserError(f"cannot resume {path}: it was written with {key} = {old}, this run has {new}")


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived; the state at `step` was saved to `path` (None without a run folder)."""

    def __init__(self, signum: int, step: int, path):
        self.signum, self.step, self.path = signum, step, path
        where = f"checkpoint saved to {path}; continue with --resume latest" if path else "nothing was saved"
        super().__init__(f"interrupted by {signal.Signals(signum).name} at step {step}; {where}")


class StopSignals:
    """Turn the first SIGINT/SIGTERM into a request to stop at the end of the step; a second one stops at once."""

    def __init__(self):
        self.signum, self.previous = None, {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
