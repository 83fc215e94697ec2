"""The training loop that teacher training and distillation share, on Hugging Face Accelerate.

Every random draw of step k comes from a generator seeded with (seed, k) over the *global* batch, and each
process takes its rows. So a run is the same with 1 or N processes, and resuming at step k needs only k.
"""

import signal
import sys
import time
from contextlib import contextmanager
from dataclasses import MISSING, asdict, fields

import numpy as np
import torch
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm

from ..config import LoopConfig, RunOptions
from ..data import ImageDataset
from ..errors import UserError
from ..io import WRITE_ERRORS, why
from . import state
from .accelerator import any_process, finish, is_main_process, make_accelerator, reset_accelerate
from .precision import resolve_precision

STEP_DRAWS, EPOCH_ORDER = 0, 1  # independent random streams of one seed


def seeded(seed: int, stream: int, index: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, stream, index]).generate_state(1)[0]))


def global_batch(data: ImageDataset, size: int, seed: int, step: int) -> tuple:
    """Batch number `step` (1-based) of a stream of seeded epochs, each a permutation cut into whole batches."""
    if data.images is None:  # prompts without images: the objective draws every row; the labels only count them
        return None, torch.zeros(size, dtype=torch.long)
    if size > len(data):
        raise UserError(f"the global batch ({size} images) exceeds the {len(data)} training images")
    per_epoch = len(data) // size
    epoch, position = divmod(step - 1, per_epoch)
    order = torch.randperm(len(data), generator=seeded(seed, EPOCH_ORDER, epoch))
    index = order[position * size : (position + 1) * size]
    return data.images[index], data.labels[index]


def trainable(model) -> list:
    """The parameters a run updates, averages and saves; a frozen base (LoRA) is neither copied nor stored."""
    return [p for p in model.parameters() if p.requires_grad]


def fastest_adamw(params: list) -> dict:
    """AdamW's fused kernel where torch has one for these parameters (CPU and CUDA floating point), else its
    foreach one: one multi-tensor update instead of a loop over parameters."""
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return {"fused": True} if fused and params else {"foreach": True}


def split_rows(batch: dict, parts: int, index: int) -> dict:
    return {k: v.chunk(parts)[index] if torch.is_tensor(v) else v for k, v in batch.items()}


def fit(
    model,
    objective,
    data: ImageDataset,
    config: LoopConfig,
    run: RunOptions | None = None,
    identity: dict | None = None,
    preview=None,
):
    """AdamW with warm-up and cosine decay, gradient clipping and EMA; returns the model holding its EMA weights.

    `objective.draw(x_0, labels, generator)` makes a global batch (a dict of tensors, one row per sample);
    `objective.loss(model, rows)` is the loss on this process's rows. `preview(model)`, if given, draws a few
    samples for TensorBoard. `identity` joins the config in the recipe that a resume must match.
    """
    config.validate()
    run = run or RunOptions()
    found = state.find_resume(run, say)
    first = (*global_batch(data, config.batch_size, config.seed, 1), seeded(config.seed, STEP_DRAWS, 1))
    resolve_precision(config, run, found, model, objective, first, say)
    accelerator = make_accelerator(config, run)
    try:
        return Training(accelerator, model, objective, data, config, run, identity or {}, preview, found).run()
    finally:
        finish(accelerator)
        reset_accelerate()


def say(text: str):
    """One line on stderr, from the main process only."""
    if is_main_process():
        tqdm.write(f"cfgdistill: {text}", file=sys.stderr)


class Training:
    """One run of the loop: restore, then step, then log and save, until the last step or a signal."""

    def __init__(self, accelerator, model, objective, data, config, run, identity, preview, found=None):
        self.accelerator, self.model, self.objective, self.data = accelerator, model, objective, data
        self.config, self.run_options, self.preview, self.found = config, run, preview, found
        self.world, self.accumulation = accelerator.num_processes, config.gradient_accumulation_steps
        self.global_size = config.batch_size * self.world * self.accumulation
        self.recipe = {**asdict(config), **identity, "processes": self.world}
        global_batch(data, self.global_size, config.seed, 1)  # refuses a batch larger than the data before any write
        if self.world > 1:
            self.log(
                f"{self.world} processes in one {torch.distributed.get_backend()} group; global batch "
                f"{self.global_size}"
            )
        self.trained = trainable(model)
        self.optimizer = torch.optim.AdamW(self.trained, lr=config.lr, weight_decay=0.0, **fastest_adamw(self.trained))
        warmup = min(config.warmup_steps, config.steps // 10)
        self.lr_schedule = get_scheduler(
            "cosine", self.optimizer, num_warmup_steps=warmup, num_training_steps=config.steps
        )
        self.wrapped, self.optimizer = accelerator.prepare(model, self.optimizer)
        self.ema = EMAModel(self.trained, decay=config.ema_decay, foreach=True)  # after prepare: on the device
        objective.to(accelerator.device)

    def log(self, text: str):
        if self.accelerator.is_main_process:
            tqdm.write(f"cfgdistill: {text}", file=sys.stderr)

    def restore(self) -> int:
        """The step to continue after: that of the checkpoint resumed, or 0 (clearing an overwritten run)."""
        run, start, found = self.run_options, 0, self.found
        if found is not None:
            resume_from, tensors, meta = found
            defaults = {f.name: f.default for f in fields(self.config) if f.default is not MISSING}
            state.check_same_run(meta, self.objective.name, self.recipe, resume_from, defaults)
            state.restore(
                tensors, meta, self.model, self.ema, self.optimizer, self.lr_schedule, resume_from, self.objective
            )
            self.ema.to(self.accelerator.device)
            start = meta["step"]
            self.log(f"resumed from {resume_from} at step {start}")
        elif run.overwrite and run.out is not None and self.accelerator.is_main_process:
            state.clear_run(run.out)
        self.accelerator.wait_for_everyone()
        if run.out is not None:
            self.accelerator.init_trackers(self.objective.name)
        return start

    def step(self, step: int) -> list:
        """One optimizer step over `accumulation` micro-batches; returns their detached losses."""
        accelerator, config = self.accelerator, self.config
        x_0, labels = global_batch(self.data, self.global_size, config.seed, step)
        batch = self.objective.draw(x_0, labels, seeded(config.seed, STEP_DRAWS, step))
        losses = []
        for micro in range(self.accumulation):
            rows = split_rows(batch, self.accumulation * self.world, micro * self.world + accelerator.process_index)
            rows = {k: v.to(accelerator.device) if torch.is_tensor(v) else v for k, v in rows.items()}
            with accelerator.accumulate(self.wrapped), accelerator.autocast():
                loss = self.objective.loss(self.wrapped, rows)
                if any_process(accelerator, not torch.isfinite(loss).item()):
                    raise self.non_finite(step, rows)
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(self.wrapped.parameters(), 1.0)
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
            losses.append(loss.detach().float())
        self.lr_schedule.step()
        self.ema.step(self.trained)
        return losses

    def non_finite(self, step: int, rows: dict) -> UserError:
        """The NaN/inf guard's message: the step, the likely cause, and which checkpoint is still good."""
        cause = self.objective.non_finite_cause(rows) or "try a lower --lr"
        return UserError(
            f"{self.objective.name}: the loss is not finite at step {step}; stopped before the update; "
            f"{state.kept_note(self.run_options.out)}; {cause}"
        )

    def save(self, step: int):
        path, run = None, self.run_options
        if self.accelerator.is_main_process:
            tensors, meta = state.capture(self.model, self.ema, self.optimizer, self.lr_schedule, self.objective)
            meta.update(recipe=self.recipe, kind=self.objective.name)
            try:
                path = state.save_state(run.out, step, tensors, meta, run.checkpoints_total_limit)
            except WRITE_ERRORS as error:
                raise UserError(
                    f"cannot write the checkpoint of step {step} in {state.checkpoint_root(run.out)}: "
                    f"{why(error)}; {state.kept_note(run.out)}"
                ) from None
        self.accelerator.wait_for_everyone()
        return path or state.checkpoint_root(self.run_options.out) / f"step-{step:07d}"

    def report(self, step: int, losses: list, clock: dict, bar):
        """Scalars to the progress bar and TensorBoard, and preview grids, at their intervals."""
        run = self.run_options
        if step % run.log_every == 0 or step == self.config.steps:
            loss = self.accelerator.reduce(torch.stack(losses).mean(), "mean").item()
            now = time.perf_counter()
            speed = (step - clock["step"]) * self.global_size / (now - clock["time"])
            clock.update(time=now, step=step)
            bar.set_postfix(loss=f"{loss:.4f}")
            lr = self.lr_schedule.get_last_lr()[0]
            self.accelerator.log({"loss": loss, "lr": lr, "samples_per_s": speed}, step=step)
        if run.out is not None and run.validate_every and step % run.validate_every == 0 and self.preview:
            self.log_preview(step)

    def run(self):
        run, start = self.run_options, self.restore()
        self.wrapped.train()
        bar = tqdm(
            range(start + 1, self.config.steps + 1),
            desc=self.objective.name,
            initial=start,
            total=self.config.steps,
            disable=run.quiet or not self.accelerator.is_main_process,
            dynamic_ncols=True,
        )
        clock, saved = {"time": time.perf_counter(), "step": start}, {}
        with state.StopSignals() as signals:
            for step in bar:
                self.report(step, self.step(step), clock, bar)
                if run.out is not None and run.checkpoint_every and step % run.checkpoint_every == 0:
                    saved[step] = self.save(step)
                if any_process(self.accelerator, signals.signum is not None):
                    path = saved.get(step) or (self.save(step) if run.out is not None else None)
                    raise state.Interrupted(signals.signum or signal.SIGTERM, step, path)
        self.ema.copy_to(self.trained)
        return self.model.eval()

    @contextmanager
    def ema_weights(self):
        """The model holding its EMA weights, in eval mode, for the block; its trained weights again after."""
        self.ema.store(self.trained)
        self.ema.copy_to(self.trained)
        try:
            yield self.model.eval()
        finally:
            self.model.train()
            self.ema.restore(self.trained)

    def log_preview(self, step: int):
        """A grid of samples from the EMA weights, on the main process, into TensorBoard."""
        if self.accelerator.is_main_process:
            from ..images import tile

            with self.ema_weights() as model:
                images = self.preview(model)
            grid = np.asarray(tile(images.cpu(), ncol=len(images)))[None, None]
            self.accelerator.get_tracker("tensorboard").log_images({"preview": grid}, step=step)
        self.accelerator.wait_for_everyone()
