"""A VAE's objective (Kingma & Welling; the KL-regularised autoencoder of latent diffusion, Rombach et al. 2022)."""

import torch
import torch.nn.functional as F

from .base import Objective


class Autoencoding(Objective):
    """Reconstruction MSE of a posterior sample, plus `kl_weight` × the KL to N(0, I) per latent element.

    Latent diffusion adds a perceptual and an adversarial loss for sharp photographs; at 28×28 grey
    garments plain MSE with a light KL keeps the class visible, and the latents smooth enough to learn.
    """

    name = "vae"

    def __init__(self, latent_shape: tuple, kl_weight: float = 1e-3):
        self.latent_shape, self.kl_weight = tuple(latent_shape), kl_weight

    def draw(self, x_0, labels, generator) -> dict:
        return {"x": x_0, "eps": torch.randn((x_0.shape[0], *self.latent_shape), generator=generator)}

    def loss(self, vae, rows: dict) -> torch.Tensor:
        posterior = vae.encode(rows["x"]).latent_dist
        z = posterior.mean + posterior.std * rows["eps"]
        recon = vae.decode(z).sample
        kl = 0.5 * (posterior.mean.square() + posterior.var - 1 - posterior.logvar)
        return F.mse_loss(recon.float(), rows["x"].float()) + self.kl_weight * kl.float().mean()
