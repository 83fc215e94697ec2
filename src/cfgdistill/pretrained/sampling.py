"""`sample --model PIPELINE`: images from a pipeline folder, teacher or student, drawn by its stock class."""

import math

import torch

from ..errors import UserError
from ..guidance.sampling import DEFAULT_STEPS
from .families import FAMILIES
from .resolve import family_of


def pipeline_arguments(name: str, student: bool, s: float, negative_prompt: str | None = None) -> dict:
    """The stock call for guidance s: guidance_scale (the student's input, or the teacher's CFG scale), or for
    a Flux teacher FluxPipeline's true CFG against the negative prompt."""
    if student:
        if negative_prompt is not None:
            raise UserError("a guidance-distilled student runs one pass per step and has no negative branch")
        return {"guidance_scale": s}
    if s < 1:
        raise UserError(f"the stock pipelines guide only for s > 1 (s = 1: conditional); got s = {s:g}")
    if name == "flux":
        return {"true_cfg_scale": s, "negative_prompt": negative_prompt or ""}
    return {"guidance_scale": s, "negative_prompt": negative_prompt}


@torch.no_grad()
def sample_pipeline(folder, config) -> tuple:
    """(N×C×H×W images in [−1, 1], grid columns, whether the pipeline is a student); image i from seed + i."""
    name, _, student = family_of(folder, students=True)
    if not config.prompt:
        raise UserError("a pipeline draws prompts: pass --prompt TEXT (repeat it for several columns)")
    if config.labels is not None:
        raise UserError("a pipeline draws prompts, not class labels: use --prompt")
    if config.sampler is not None:
        raise UserError("a pipeline samples with its own scheduler; --sampler applies to cfgdistill checkpoints")
    if config.guider is not None or config.guider_option:
        raise UserError("a pipeline guides by its own guidance_scale; --guider applies to cfgdistill checkpoints")
    arguments = pipeline_arguments(name, student, config.s, config.negative_prompt)
    pipe = FAMILIES[name].load(folder)
    arguments |= FAMILIES[name].call_arguments(pipe)
    pipe.set_progress_bar_config(disable=config.quiet)
    n = config.n or len(config.prompt)
    prompts = (config.prompt * math.ceil(n / len(config.prompt)))[:n]
    images = []
    for start in range(0, n, config.batch_size):
        batch = prompts[start : start + config.batch_size]
        generators = [torch.Generator().manual_seed(config.seed + start + i) for i in range(len(batch))]
        out = pipe(
            batch,
            num_inference_steps=config.steps or DEFAULT_STEPS,
            generator=generators,
            output_type="pt",
            **arguments,
        )
        images.append(out.images.float().cpu() * 2 - 1)
    return torch.cat(images), len(config.prompt), student
