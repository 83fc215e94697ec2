"""One sampling loop for any denoiser over diffusers schedulers: guided for a teacher, one pass for a student."""

import warnings

import torch
from tqdm.auto import tqdm

from ..errors import UserError
from ..guidance import guided
from ..guidance.denoiser import check_request
from ..networks import device_of
from ..processes.stochastic import StochasticSampler

STOCHASTIC = "stochastic"  # Meng et al.'s N-step stochastic sampler, on any model's grid


def initial_noise(seeds, shape, device="cpu", generators: list | None = None) -> torch.Tensor:
    """x_T with each image drawn from its own generator, so an image does not depend on batch size.
    `generators` (one per seed, seeded here) go on to draw that image's later noise."""
    generators = generators if generators is not None else []
    generators[:] = [torch.Generator().manual_seed(int(seed)) for seed in seeds]
    return torch.stack([torch.randn(shape, generator=g) for g in generators]).to(device)


def check_labels(labels, num_classes: int):
    """Labels (a tensor or a list of ints of any size) within the model's classes."""
    if torch.is_tensor(labels):
        labels = labels[(labels < 0) | (labels >= num_classes)].tolist()
    bad = [int(label) for label in labels if not 0 <= int(label) < num_classes]
    if bad:
        raise UserError(f"label {bad[0]} is outside the model's classes 0..{num_classes - 1}")


DEFAULT_STEPS = 25


def sampling_steps(checkpoint, steps: int | None, sampler: str | None = None):
    """A few-step student's own grid, unless `steps` or `sampler` asks for another (with a warning); else `steps`."""
    grid = checkpoint.grid
    if grid and (steps not in (None, len(grid)) or sampler not in (None, STOCHASTIC)):
        asked = f"{steps or len(grid)} steps" + (f" of {sampler}" if sampler else "")
        warnings.warn(f"this student was distilled to sample on its own {len(grid)}-step grid; sampling {asked}")
        return steps or len(grid)
    return grid or steps or DEFAULT_STEPS


def denoise(denoiser, sampler, x_T, cond=None, steps: int | None = 25, progress=False, callback=None):
    """Run the reverse process from x_T; `callback(i, t, x_t)` sees every step (k-diffusion's hook).
    `steps` None: the sampler's timesteps are already set (a recorded grid)."""
    if steps is not None:
        sampler.set_timesteps(steps, device=x_T.device)
    x = x_T * getattr(sampler, "init_noise_sigma", 1.0)  # flow schedulers start at unit noise and do not scale
    scale = getattr(sampler, "scale_model_input", lambda x, t: x)
    for i, t in enumerate(tqdm(sampler.timesteps, desc="sample", disable=not progress, leave=False)):
        pred = denoiser(scale(x, t), t.expand(x.shape[0]), cond)
        x = sampler.step(pred, t, x).prev_sample
        if callback is not None:
            callback(i, t, x)
    return x


@torch.no_grad()
def generate(
    model,
    process,
    cond=None,
    *,
    n: int | None = None,
    s: float = 1.0,
    rule: str = "cfg",
    options: dict | None = None,
    steps: int | list = 25,
    sampler: str | None = None,
    seed: int = 0,
    negative=None,
    shape: tuple | None = None,
    batch_size: int = 256,
    progress: bool = False,
    callback=None,
) -> torch.Tensor:
    """Draw N×C×H×W samples in [-1, 1]. Image i starts from noise seeded with seed + i.

    `model(x_t, t, cond)` may be a cfgdistill network or any callable (cond None = unconditional);
    a teacher is guided by `rule` (with its `options`), a student runs once per step. `process` is the forward process;
    `sampler` names one of its diffusers schedulers (default: the process's own, DDIM or Euler). `steps` is a
    count, or a few-step student's grid (its timesteps, descending), which its deterministic sampler steps along.
    """
    grid = list(steps) if isinstance(steps, (list, tuple)) else None
    steps = len(grid) if grid else steps
    n = len(cond) if cond is not None else n
    check_request_size(process, n, steps, seed)
    if cond is not None and hasattr(model, "config") and not getattr(model.config, "text_dim", None):
        check_labels(cond, model.config.num_classes)
    shape = shape or model.sample_shape
    device = device_of(model)
    check_request(model, s, negative)
    chunks = []
    for start in tqdm(range(0, n, batch_size), desc="batches", disable=not progress or n <= batch_size):
        stop = min(n, start + batch_size)
        generators = []
        x_T = initial_noise(range(seed + start, seed + stop), shape, device, generators)
        part, neg = (None if c is None else c[start:stop].to(device) for c in (cond, negative))
        denoiser = guided(model, s, rule, neg, steps, T=process.num_train_timesteps, **(options or {}))
        schedule = scheduler_for(process, sampler, grid, steps, generators)
        count = None if grid or sampler == STOCHASTIC else steps  # None: the schedule's timesteps are set
        x_0 = denoise(denoiser, schedule, x_T, part, count, progress, callback)
        if not torch.isfinite(x_0).all():
            raise UserError(non_finite_cause(model, s))
        chunks.append(x_0.clamp(-1, 1).cpu())
    return torch.cat(chunks)


def scheduler_for(process, sampler: str | None, grid: list | None, steps: int, generators: list):
    """Meng's stochastic sampler on `grid` (or the process's deterministic grid of `steps`), the deterministic
    sampler on a recorded grid, or the named diffusers scheduler."""
    if sampler == STOCHASTIC:
        return StochasticSampler(process, grid or process.grid(steps), generators)
    return process.grid_sampler(grid) if grid else process.sampler(sampler)


def check_request_size(process, n, steps: int, seed: int):
    if n is None or n <= 0:
        raise UserError(f"the number of samples must be > 0, got {n}")
    if steps <= 0:
        raise UserError(f"steps must be > 0, got {steps}")
    if steps > process.num_train_timesteps:
        raise UserError(f"steps ({steps}) exceed the {process.num_train_timesteps} timesteps of the model's schedule")
    if seed < 0 or seed + n > 2**63:
        raise UserError(f"seeds {seed} to {seed + n - 1} do not fit a random generator (0 to 2^63 - 1)")


def non_finite_cause(model, s) -> str:
    """Why samples came out NaN or infinite: the weights themselves, or a scale the model cannot take."""
    weights = list(model.parameters()) if isinstance(model, torch.nn.Module) else []
    if any(not torch.isfinite(w).all() for w in weights):
        return "the samples are not finite (NaN or inf) because the model's weights are not: the checkpoint is damaged"
    scale = f"s = {float(s):g}" if not torch.is_tensor(s) or s.numel() == 1 else "the scale"
    return f"the samples are not finite (NaN or inf): {scale} is too large for this model; try a smaller s"
