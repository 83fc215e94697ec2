"""Training objectives: what the shared loop minimises. Each is a class with `name`, `draw` and `loss`.

- `denoising.Denoising`: the teacher's diffusion loss with condition dropout;
- `guidance_distillation.GuidanceDistillation`: stage 1 of Meng et al., a one-pass student of a guidance rule;
- `progressive.ProgressiveDistillation`: stage 2, a student that lands in one step where its teacher lands in two.
"""

from .base import Objective
from .denoising import Denoising
from .guidance_distillation import GuidanceDistillation

__all__ = ["Denoising", "GuidanceDistillation", "Objective"]
