"""Training objectives: what the shared loop minimises. Each is a class with `name`, `draw` and `loss`.

- `denoising.Denoising`: the teacher's diffusion loss with condition dropout;
- `guidance_distillation.GuidanceDistillation`: stage 1 of Meng et al., a one-pass student of a guidance rule;
- `autoencoding.Autoencoding`: the VAE of a latent pipeline that cfgdistill trains itself.
"""

from .autoencoding import Autoencoding
from .base import Objective
from .denoising import Denoising
from .guidance_distillation import GuidanceDistillation

__all__ = ["Autoencoding", "Denoising", "GuidanceDistillation", "Objective"]
