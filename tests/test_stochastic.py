"""Meng et al.'s N-step stochastic sampler: analytic truths and a slow per-image reference."""

import pytest
import torch
from test_progressive import PointMass

from cfgdistill.guidance.sampling import denoise, initial_noise
from cfgdistill.processes import VP, RectifiedFlow
from cfgdistill.processes.stochastic import StochasticSampler

PROCESSES = {"vp": lambda: VP.create("v_prediction"), "flow": lambda: RectifiedFlow.create(shift=3.0)}


def net(x, t, cond=None):
    return torch.tanh(0.7 * x + t.float().view(-1, 1, 1, 1) / 1000)


def stochastic(process, grid, model, seeds, shape=(1, 4, 4)):
    generators = []
    x_T = initial_noise(seeds, shape, generators=generators)
    return denoise(model, StochasticSampler(process, grid, generators), x_T, steps=None)


@pytest.mark.parametrize("name", PROCESSES)
@pytest.mark.parametrize("steps", [1, 2, 4, 8])
def test_the_exact_model_of_a_point_mass_lands_on_it(name, steps):
    """Every x̂_0 is the point c, so whatever noise the backward steps add, the last step lands on c."""
    process, c = PROCESSES[name](), torch.full((1, 4, 4), 0.3)
    x = stochastic(process, process.grid(steps), PointMass(process, c), range(5))
    assert torch.allclose(x, c.expand_as(x), atol=1e-4)


@pytest.mark.parametrize("name", PROCESSES)
def test_renoising_keeps_the_forward_marginal(name):
    """x_b ~ q(x_b | x_0) renoised to t_m is a draw of q(x_m | x_0): mean a_m·x_0, standard deviation σ_m."""
    process = PROCESSES[name]()
    t_b, t_m = torch.tensor(300.0), torch.tensor(700.0)
    x_0 = torch.full((8, 1, 64, 64), 0.5)
    (a_b, s_b), (a_m, s_m) = process.alpha_sigma(t_b), process.alpha_sigma(t_m)
    x_b = a_b * x_0 + s_b * torch.randn(x_0.shape, generator=torch.Generator().manual_seed(0))
    generators = [torch.Generator().manual_seed(100 + i) for i in range(len(x_0))]
    x_m = StochasticSampler(process, [999.0], generators).renoise(x_b, t_b, t_m)
    assert x_m.mean().item() == pytest.approx((a_m * 0.5).item(), abs=0.01)
    assert x_m.std().item() == pytest.approx(s_m.item(), rel=0.01)


def test_it_is_the_slow_per_image_recipe_of_meng_algorithm_3():
    """Per image, in plain floats: a DDIM step two grid points down, forward noise one point back, and a last
    deterministic step, with each image's noise drawn from its own generator after its x_T."""
    process = PROCESSES["vp"]()
    grid, seeds = process.grid(4), [3, 9]
    fast = stochastic(process, grid, net, seeds)
    bar = [*(float(process.alphas_cumprod[int(t)]) for t in grid), 1.0]
    for k, seed in enumerate(seeds):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn((1, 4, 4), generator=g)
        for i, t in enumerate(grid):
            v = net(x[None], torch.tensor([t]))[0]
            x_0 = bar[i] ** 0.5 * x - (1 - bar[i]) ** 0.5 * v
            eps = (1 - bar[i]) ** 0.5 * x + bar[i] ** 0.5 * v
            j = min(i + 2, len(grid))
            x = bar[j] ** 0.5 * x_0 + (1 - bar[j]) ** 0.5 * eps
            if j == i + 2:
                ratio = (bar[i + 1] / bar[j]) ** 0.5
                z = torch.randn((1, 4, 4), generator=g)
                x = ratio * x + ((1 - bar[i + 1]) - ratio**2 * (1 - bar[j])) ** 0.5 * z
        assert torch.allclose(fast[k], x, atol=1e-5)


@pytest.mark.parametrize("name", PROCESSES)
def test_one_step_is_the_deterministic_step_and_more_steps_are_not(name):
    """Deterministic: the grid's jumps, which test_progressive ties to the diffusers schedulers."""
    process = PROCESSES[name]()
    x_T = initial_noise(range(3), (1, 4, 4))
    for steps in (1, 4):
        x, points = x_T, [*process.grid(steps), process.end]
        for a, b in zip(points[:-1], points[1:]):
            x = process.jump(x, net(x, torch.full((3,), a)), torch.tensor(a), torch.tensor(b))
        noisy = stochastic(process, points[:-1], net, range(3))
        assert torch.allclose(x, noisy, atol=1e-5) == (steps == 1)
