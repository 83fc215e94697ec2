"""Hugging Face Accelerate set-up for the training loop: one process or a DDP group, on CPU or GPU."""

import os
from pathlib import Path

import torch

from ..errors import UserError


def make_accelerator(config, run):
    from accelerate import Accelerator

    world = int(os.environ.get("WORLD_SIZE", "1"))
    try:
        accelerator = Accelerator(
            mixed_precision=config.mixed_precision,
            gradient_accumulation_steps=config.gradient_accumulation_steps,
            cpu=run.cpu
            or not torch.cuda.is_available(),  # without it, CPU processes stay apart instead of forming a gloo group
            log_with="tensorboard" if run.out is not None else None,
            project_dir=None if run.out is None else Path(run.out) / "logs",
        )
    except (ValueError, RuntimeError) as error:
        raise UserError(f"cannot start training: {str(error).strip().splitlines()[0]}") from None
    if world > 1 and accelerator.num_processes != world:
        raise UserError(f"WORLD_SIZE is {world} but the process group has {accelerator.num_processes} process(es)")
    if accelerator.distributed_type.value not in ("NO", "MULTI_CPU", "MULTI_GPU"):
        raise UserError(f"{accelerator.distributed_type.value} is not supported; use plain data parallel (DDP)")
    return accelerator


def finish(accelerator):
    """Close the trackers but keep the process group: `end_training` would destroy it, and then the DDP wrapper's
    release destroys the gloo group while holding the GIL, which deadlocks when a gloo worker is still freeing the
    last collective (it needs the GIL too)."""
    for tracker in accelerator.trackers:
        tracker.finish()


def reset_accelerate():
    """Accelerate keeps its settings in process-wide singletons; a later fit() in this process may differ."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()


def any_process(accelerator, flag: bool) -> bool:
    """True on every process when it is true on one; a no-op for one process."""
    if accelerator.num_processes == 1:
        return flag
    value = torch.tensor([float(flag)], device=accelerator.device)
    return bool(accelerator.reduce(value, "sum").item() > 0)


def is_main_process() -> bool:
    """Under `accelerate launch` or torchrun only rank 0 writes the final model."""
    return os.environ.get("RANK", "0") == "0"
