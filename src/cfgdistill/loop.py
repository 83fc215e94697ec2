"""The training loop that teacher training and distillation share, on Hugging Face Accelerate.

Every random draw of step k comes from a generator seeded with (seed, k) over the *global* batch, and each
process takes its rows. So a run is the same with 1 or N processes, and resuming at step k needs only k.
"""

import json
import math
import os
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm

from . import training_state
from .data import ImageDataset
from .errors import UserError

MIXED_PRECISION = ("no", "bf16", "fp16")


def positive(**values):
    """Refuse any value that is not a finite number above zero, naming the flag."""
    for name, value in values.items():
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise UserError(f"{name.replace('_', '-')} must be > 0, got {value}")


@dataclass
class LoopConfig:
    """What a run computes; resuming refuses a checkpoint written under different values."""

    steps: int = 2000
    batch_size: int = 64  # per process and micro-batch
    gradient_accumulation_steps: int = 1
    lr: float = 1e-3
    warmup_steps: int = 100
    p_uncond: float = 0.1
    ema_decay: float = 0.999
    mixed_precision: str = "no"
    seed: int = 0

    def validate(self):
        positive(steps=self.steps, batch_size=self.batch_size, lr=self.lr,
                 gradient_accumulation_steps=self.gradient_accumulation_steps)
        if not (isinstance(self.seed, int) and self.seed >= 0):
            raise UserError(f"seed must be a whole number >= 0, got {self.seed}")
        if not 0 <= self.p_uncond < 1:
            raise UserError(f"p-uncond must be in [0, 1), got {self.p_uncond}")
        if not 0 <= self.ema_decay < 1:
            raise UserError(f"ema-decay must be in [0, 1), got {self.ema_decay}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise UserError(f"mixed-precision must be one of {', '.join(MIXED_PRECISION)}, got {self.mixed_precision!r}")


@dataclass
class RunOptions:
    """Where and how often a run writes; these may change between an interruption and its resume."""

    out: Path | None = None  # run folder: checkpoints/ and logs/; None keeps everything in memory
    checkpoint_every: int = 500  # 0: never
    checkpoints_total_limit: int | None = None
    resume: str | None = None  # "latest" or a checkpoint folder
    log_every: int = 50
    validate_every: int = 500  # preview grid in TensorBoard; 0: never
    progress: bool = True
    cpu: bool = False  # train on the CPU even where a GPU is present (bitwise-reproducible resumes)
    overwrite: bool = False  # a new run replaces the folder's checkpoints and logs, cleared only once its checks pass


class Objective:
    """What a loop minimises. Subclasses give `name`, `draw` and `loss`; the preview is shared."""

    name = "objective"
    preview_s = 3.0

    def __init__(self, noise_schedule, conditioning, num_classes: int):
        self.noise_schedule, self.conditioning, self.num_classes = noise_schedule, conditioning, num_classes

    def to(self, device):
        """Move any frozen network the loss uses (the teacher, when distilling)."""

    def draw(self, x_0, labels, generator) -> dict:
        raise NotImplementedError

    def state_dict(self) -> dict:
        """Tensors the objective carries from step to step (none, unless it keeps paths); saved with checkpoints."""
        return {}

    def load_state_dict(self, state: dict):
        pass

    def loss(self, model, rows: dict) -> torch.Tensor:
        raise NotImplementedError

    def preview(self, model) -> torch.Tensor:
        """One sample per class at s = preview_s (inside a student's range), fixed seeds."""
        from .sampling import sample

        s = self.preview_s
        if model.config.guidance_range:
            s = min(max(s, model.config.guidance_range[0]), model.config.guidance_range[1])
        cond = self.conditioning.for_classes(torch.arange(self.num_classes)).to(model.device)
        return sample(model, self.noise_schedule, cond, s=s, steps=20, progress=False)


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


STEP_DRAWS, EPOCH_ORDER = 0, 1  # independent random streams of one seed


def seeded(seed: int, stream: int, index: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, stream, index]).generate_state(1)[0]))


def global_batch(data: ImageDataset, size: int, seed: int, step: int) -> tuple:
    """Batch number `step` (1-based) of a stream of seeded epochs, each a permutation cut into whole batches."""
    if size > len(data):
        raise UserError(f"the global batch ({size} images) exceeds the {len(data)} training images")
    per_epoch = len(data) // size
    epoch, position = divmod(step - 1, per_epoch)
    order = torch.randperm(len(data), generator=seeded(seed, EPOCH_ORDER, epoch))
    index = order[position * size : (position + 1) * size]
    return data.images[index], data.labels[index]


def make_accelerator(config: LoopConfig, run: RunOptions):
    from accelerate import Accelerator

    world = int(os.environ.get("WORLD_SIZE", "1"))
    try:
        accelerator = Accelerator(
            mixed_precision=config.mixed_precision,
            gradient_accumulation_steps=config.gradient_accumulation_steps,
            cpu=run.cpu or not torch.cuda.is_available(),  # without it, CPU processes stay apart instead of forming a gloo group
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


def find_resume(run: RunOptions, log) -> Path | None:
    if run.resume is None:
        return None
    if run.resume != "latest":
        return Path(run.resume)
    if run.out is None:
        raise UserError("resume latest needs a run folder to look in")
    complete, incomplete = training_state.scan(run.out)
    for path in incomplete:
        log(f"skipping incomplete checkpoint {path}")
    if not complete:
        log(f"no complete checkpoint in {training_state.checkpoint_root(run.out)}; starting a new run")
        return None
    return complete[-1]


def check_same_run(meta: dict, recipe: dict, path):
    """Refuse to continue a checkpoint under other settings, naming the first setting that differs."""
    saved, recipe = meta.get("recipe", {}), json.loads(json.dumps(recipe))  # tuples compare as JSON lists
    for key in sorted(set(saved) | set(recipe)):
        old, new = saved.get(key, "<absent>"), recipe.get(key, "<absent>")
        if old != new:
            raise UserError(f"cannot resume {path}: it was written with {key} = {old}, this run has {new}")


def non_finite(objective, step: int, run: RunOptions) -> UserError:
    """The NaN/inf guard's message: the step, and which checkpoint is still good."""
    last, _ = training_state.scan(run.out) if run.out is not None else ([], [])
    kept = f"the last complete checkpoint, {last[-1]}, is intact" if last else "no checkpoint was written"
    return UserError(f"{objective.name}: the loss is not finite at step {step}; stopped before the update; {kept}; try a lower --lr")


def split_rows(batch: dict, parts: int, index: int) -> dict:
    return {k: v.chunk(parts)[index] if torch.is_tensor(v) else v for k, v in batch.items()}


def fit(model, objective, data: ImageDataset, config: LoopConfig, run: RunOptions | None = None, identity: dict | None = None):
    """AdamW with warm-up and cosine decay, gradient clipping and EMA; returns the model holding its EMA weights.

    `objective.draw(x_0, labels, generator)` makes a global batch (a dict of tensors, one row per sample);
    `objective.loss(model, rows)` is the loss on this process's rows; `objective.preview(model)` a few samples.
    `identity` joins the config in the recipe that a resume must match (e.g. the teacher being distilled).
    """
    config.validate()
    run = run or RunOptions()
    accelerator = make_accelerator(config, run)
    try:
        return _fit(accelerator, model, objective, data, config, run, identity or {})
    finally:
        accelerator.end_training()
        reset_accelerate()


def _fit(accelerator, model, objective, data, config, run, identity):
    log = lambda text: accelerator.is_main_process and tqdm.write(f"cfgdistill: {text}", file=sys.stderr)
    world, accumulation = accelerator.num_processes, config.gradient_accumulation_steps
    global_size = config.batch_size * world * accumulation
    recipe = {**asdict(config), **identity, "processes": world}
    global_batch(data, global_size, config.seed, 1)  # refuses a batch larger than the data before anything is written
    if world > 1:
        log(f"{world} processes in one {torch.distributed.get_backend()} group; global batch {global_size}")

    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
    warmup = min(config.warmup_steps, config.steps // 10)
    lr_schedule = get_scheduler("cosine", optimizer, num_warmup_steps=warmup, num_training_steps=config.steps)
    wrapped, optimizer = accelerator.prepare(model, optimizer)
    ema = EMAModel(model.parameters(), decay=config.ema_decay, foreach=True)  # after prepare: on the device
    objective.to(accelerator.device)

    start = 0
    resume_from = find_resume(run, log)
    if resume_from is not None:
        tensors, meta = training_state.load_state(resume_from)
        if meta.get("kind") != objective.name:
            raise UserError(f"cannot resume {resume_from}: it holds a {meta.get('kind')} run, this run trains a {objective.name}")
        check_same_run(meta, recipe, resume_from)
        training_state.restore(tensors, meta, model, ema, optimizer, lr_schedule, resume_from, objective)
        ema.to(accelerator.device)
        start = meta["step"]
        log(f"resumed from {resume_from} at step {start}")
    elif run.overwrite and run.out is not None and accelerator.is_main_process:
        training_state.clear_run(run.out)
    accelerator.wait_for_everyone()
    if run.out is not None:
        accelerator.init_trackers(objective.name)

    def save(step):
        path = None
        if accelerator.is_main_process:
            tensors, meta = training_state.capture(model, ema, optimizer, lr_schedule, objective)
            meta.update(recipe=recipe, kind=objective.name)
            path = training_state.save_state(run.out, step, tensors, meta, run.checkpoints_total_limit)
        accelerator.wait_for_everyone()
        return path or training_state.checkpoint_root(run.out) / f"step-{step:07d}"

    wrapped.train()
    bar = tqdm(range(start + 1, config.steps + 1), desc=objective.name, initial=start, total=config.steps,
               disable=not (run.progress and accelerator.is_main_process), dynamic_ncols=True)
    tick, ticked_at, saved = time.perf_counter(), start, {}
    with StopSignals() as signals:
        for step in bar:
            x_0, labels = global_batch(data, global_size, config.seed, step)
            batch = objective.draw(x_0, labels, seeded(config.seed, STEP_DRAWS, step))
            losses = []
            for micro in range(accumulation):
                rows = split_rows(batch, accumulation * world, micro * world + accelerator.process_index)
                rows = {k: v.to(accelerator.device) if torch.is_tensor(v) else v for k, v in rows.items()}
                with accelerator.accumulate(wrapped), accelerator.autocast():
                    loss = objective.loss(wrapped, rows)
                    if any_process(accelerator, not torch.isfinite(loss).item()):
                        raise non_finite(objective, step, run)
                    accelerator.backward(loss)
                    if accelerator.sync_gradients:
                        accelerator.clip_grad_norm_(wrapped.parameters(), 1.0)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                losses.append(loss.detach().float())
            lr_schedule.step()
            ema.step(model.parameters())

            if step % run.log_every == 0 or step == config.steps:
                loss = accelerator.reduce(torch.stack(losses).mean(), "mean").item()
                now = time.perf_counter()
                speed = (step - ticked_at) * global_size / (now - tick)
                tick, ticked_at = now, step
                bar.set_postfix(loss=f"{loss:.4f}")
                accelerator.log({"loss": loss, "lr": lr_schedule.get_last_lr()[0], "samples_per_s": speed}, step=step)
            if run.out is not None and run.validate_every and step % run.validate_every == 0:
                log_preview(accelerator, model, ema, objective, step)
            if run.out is not None and run.checkpoint_every and step % run.checkpoint_every == 0:
                saved[step] = save(step)
            if any_process(accelerator, signals.signum is not None):
                path = saved.get(step) or (save(step) if run.out is not None else None)
                raise Interrupted(signals.signum or signal.SIGTERM, step, path)
    ema.copy_to(model.parameters())
    return model.eval()


def log_preview(accelerator, model, ema, objective, step):
    """A grid of samples from the EMA weights, on the main process, into TensorBoard."""
    if accelerator.is_main_process:
        from .images import tile

        ema.store(model.parameters())
        ema.copy_to(model.parameters())
        images = objective.preview(model.eval())
        model.train()
        ema.restore(model.parameters())
        grid = np.asarray(tile(images.cpu(), ncol=len(images)))[None, None]
        accelerator.get_tracker("tensorboard").log_images({"preview": grid}, step=step)
    accelerator.wait_for_everyone()
