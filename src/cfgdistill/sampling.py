"""One sampling loop for any denoiser over diffusers schedulers: CFG for a teacher, one pass for a student."""

import warnings

import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler
from tqdm.auto import tqdm

from .errors import ExtrapolationWarning, UserError
from .guidance import cfg_prediction, check_guidance

SAMPLERS = {
    "ddim": DDIMScheduler,  # deterministic (eta = 0)
    "dpm++": DPMSolverMultistepScheduler,  # DPM-Solver++(2M)
    "euler": EulerDiscreteScheduler,
}


def make_sampler(name: str, noise_schedule):
    """A fresh sampling scheduler on the training schedule; "trailing" spacing starts from t = T − 1."""
    if name not in SAMPLERS:
        raise UserError(f"unknown sampler {name!r}; choose one of: {', '.join(SAMPLERS)}")
    return SAMPLERS[name].from_config(noise_schedule.config, timestep_spacing="trailing")


def initial_noise(seeds, shape, device="cpu") -> torch.Tensor:
    """x_T with each image drawn from its own generator, so an image does not depend on batch size."""
    images = [torch.randn(shape, generator=torch.Generator().manual_seed(int(seed))) for seed in seeds]
    return torch.stack(images).to(device)


def takes_guidance(model) -> bool:
    """Whether the model is a guidance-distilled student that takes s as an input."""
    config = getattr(model, "config", None)
    return bool(getattr(config, "guidance_embedding", False))


def guided_denoiser(model, s: float, negative_given: bool = False):
    """A denoiser (x_t, t, cond, negative) -> prediction at guidance s: one pass for a student, CFG otherwise."""
    s = check_guidance(s)
    if not takes_guidance(model):
        return lambda x_t, t, cond, negative: cfg_prediction(model, x_t, t, cond, s, negative)
    if negative_given:
        raise UserError("a guidance-distilled student has no unconditional branch, so it takes no negative condition")
    low, high = model.config.guidance_range
    if not low <= s <= high:
        warnings.warn(f"the student was distilled on s in [{low:g}, {high:g}]; s = {s:g} is extrapolated", ExtrapolationWarning, stacklevel=3)
    return lambda x_t, t, cond, negative: model(x_t, t, cond, s=s)


def check_labels(labels: torch.Tensor, num_classes: int):
    bad = labels[(labels < 0) | (labels >= num_classes)]
    if len(bad):
        raise UserError(f"label {int(bad[0])} is outside the model's classes 0..{num_classes - 1}")


def denoise(model_fn, sampler, x_T, cond=None, negative=None, steps: int = 25, progress=False, callback=None):
    """Run the reverse process from x_T; `callback(i, t, x_t)` sees every step (k-diffusion's hook)."""
    sampler.set_timesteps(steps, device=x_T.device)
    x = x_T * sampler.init_noise_sigma
    for i, t in enumerate(tqdm(sampler.timesteps, desc="sample", disable=not progress, leave=False)):
        pred = model_fn(sampler.scale_model_input(x, t), t.expand(x.shape[0]), cond, negative)
        x = sampler.step(pred, t, x).prev_sample
        if callback is not None:
            callback(i, t, x)
    return x


@torch.no_grad()
def sample(
    model,
    noise_schedule,
    cond=None,
    *,
    n: int | None = None,
    s: float = 1.0,
    steps: int = 25,
    sampler: str = "ddim",
    seed: int = 0,
    negative=None,
    shape: tuple | None = None,
    batch_size: int = 256,
    progress: bool = False,
    callback=None,
) -> torch.Tensor:
    """Draw N×C×H×W samples in [-1, 1]. Image i starts from noise seeded with seed + i.

    `model(x_t, t, cond)` may be a cfgdistill network or any callable (cond None = unconditional);
    a teacher is guided with CFG (one batched pass for cond and uncond), a student runs once per step.
    """
    n = len(cond) if cond is not None else n
    if n is None or n <= 0:
        raise UserError(f"the number of samples must be > 0, got {n}")
    if steps <= 0:
        raise UserError(f"steps must be > 0, got {steps}")
    if cond is not None and hasattr(model, "config") and not getattr(model.config, "text_dim", None):
        check_labels(cond, model.config.num_classes)
    model_fn = guided_denoiser(model, s, negative is not None)
    shape = shape or model.sample_shape
    device = next(model.parameters()).device if isinstance(model, torch.nn.Module) else torch.device("cpu")
    chunks = []
    for start in tqdm(range(0, n, batch_size), desc="batches", disable=not progress or n <= batch_size):
        stop = min(n, start + batch_size)
        x_T = initial_noise(range(seed + start, seed + stop), shape, device)
        part = [None if c is None else c[start:stop].to(device) for c in (cond, negative)]
        x_0 = denoise(model_fn, make_sampler(sampler, noise_schedule), x_T, *part, steps=steps, progress=progress, callback=callback)
        chunks.append(x_0.clamp(-1, 1).cpu())
    return torch.cat(chunks)
