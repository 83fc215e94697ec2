"""Rectified flow against analytic truths: exact Gaussian velocities, the Euler step, the t draw."""

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from cfgdistill.guidance.sampling import generate
from cfgdistill.processes import RectifiedFlow

SIGMA_0 = 0.2  # the guided Gaussians lie within 4 σ_0 of the [-1, 1] that `generate` clamps to
MU = {0: torch.tensor([0.05, -0.02, 0.1, 0.0]), 1: torch.tensor([0.0, 0.05, 0.05, -0.05])}  # class 1 is the null


class ExactVelocity(torch.nn.Module):
    """E[eps − x_0 | x_t] for x_0 ~ N(μ_c, σ_0²·I): the exact flow of a Gaussian class, the null class 1."""

    sample_shape = (1, 2, 2)

    def null_condition(self, cond):
        return torch.ones_like(cond)

    def forward(self, x_t, t, cond=None):
        cond = torch.ones(x_t.shape[0], dtype=torch.long) if cond is None else cond
        tau = (t.float() / 1000).view(-1, 1, 1, 1)
        mu = torch.stack([MU[int(c)] for c in cond]).view(-1, *self.sample_shape)
        var = (1 - tau) ** 2 * SIGMA_0**2 + tau**2
        centred = x_t - (1 - tau) * mu
        x_0 = mu + (1 - tau) * SIGMA_0**2 / var * centred
        eps = tau / var * centred
        return eps - x_0


@pytest.mark.parametrize("sampler, steps", [("euler", 200), ("heun", 30), ("dpm++", 50)])
@pytest.mark.parametrize("s", [0.0, 1.0, 3.0])
def test_cfg_velocity_transports_noise_to_the_guided_gaussian(sampler, steps, s):
    """CFG on the velocity at scale s moves N(0, I) to N((1 − s)·μ_u + s·μ_c, σ_0²) (equal variances)."""
    n = 4000
    images = generate(
        ExactVelocity(), RectifiedFlow.create(), torch.zeros(n, dtype=torch.long), s=s, steps=steps, sampler=sampler
    )
    flat = images.view(n, -1)
    expected = (1 - s) * MU[1] + s * MU[0]
    assert torch.allclose(flat.mean(0), expected, atol=0.01)
    assert torch.allclose(flat.std(0), torch.full((4,), SIGMA_0), atol=0.006)


def test_unclamped_mean_and_spread():
    """The same transport through the denoise loop itself (no clamp), far from the training range of s."""
    from cfgdistill.guidance import guided
    from cfgdistill.guidance.sampling import denoise

    n, s = 4000, 7.0
    x_T = torch.randn((n, 1, 2, 2), generator=torch.Generator().manual_seed(0))
    cond = torch.zeros(n, dtype=torch.long)
    x_0 = denoise(guided(ExactVelocity(), s), RectifiedFlow.create().sampler("heun"), x_T, cond, steps=40)
    flat = x_0.view(n, -1)
    assert torch.allclose(flat.mean(0), (1 - s) * MU[1] + s * MU[0], atol=0.01)
    assert torch.allclose(flat.std(0), torch.full((4,), SIGMA_0), atol=0.006)


def test_euler_path_steps_like_the_scheduler():
    """Rows at different grid points advance exactly as FlowMatchEulerDiscreteScheduler advances each alone."""
    flow = RectifiedFlow.create(shift=3.0)
    path = flow.deterministic_path(8)
    g = torch.Generator().manual_seed(1)
    x, v = torch.randn((5, 1, 4, 4), generator=g), torch.randn((5, 1, 4, 4), generator=g)
    k = torch.tensor([0, 3, 7, 2, 5])
    moving = torch.tensor([True, True, True, False, True])
    out = path.step(v, x, k, moving)
    for row in range(5):
        if not moving[row]:
            assert torch.equal(out[row], x[row])
            continue
        scheduler = FlowMatchEulerDiscreteScheduler.from_config(flow.schedule.config)
        scheduler.set_timesteps(8)
        scheduler.set_begin_index(int(k[row]))
        expected = scheduler.step(v[row : row + 1], scheduler.timesteps[k[row]], x[row : row + 1]).prev_sample
        assert torch.equal(out[row : row + 1], expected)


def test_noising_target_and_t_draw():
    flow = RectifiedFlow.create(shift=3.0)
    g = torch.Generator().manual_seed(0)
    x_0, eps = torch.randn((3, 1, 2, 2), generator=g), torch.randn((3, 1, 2, 2), generator=g)
    ends = flow.add_noise(x_0, eps, torch.tensor([0.0, 1000.0, 250.0]))
    assert torch.equal(ends[0], x_0[0]) and torch.equal(ends[1], eps[1])
    assert torch.allclose(ends[2], 0.75 * x_0[2] + 0.25 * eps[2])
    assert torch.equal(flow.target(x_0, eps, None), eps - x_0)
    t = flow.draw_t(20000, g)
    assert 0 < t.min() and t.max() < 1000
    assert abs(t.median().item() / 1000 - 0.75) < 0.01  # shift 3 moves the logit-normal median 0.5 to 0.75
    assert torch.equal(flow.bin(torch.tensor([0.0, 999.5, 1000.0])), torch.tensor([0, 999, 999]))


def test_ddim_is_refused_for_flow():
    from cfgdistill.errors import UserError

    with pytest.raises(UserError, match="does not apply to a flow model"):
        RectifiedFlow.create().sampler("ddim")


def test_flow_with_our_unet_trains_distills_and_samples_through_the_cli(tmp_path):
    """`--objective flow` on the UNet: the run records the process, distillation walks Euler paths, every flow
    sampler draws, and the student's one pass matches its own reload."""
    from cfgdistill.checkpoint import load
    from cfgdistill.cli import main

    common = ["--steps", "3", "--batch-size", "16", "--quiet", "--validate-every", "0"]
    train = [
        "train",
        "--objective",
        "flow",
        "--shift",
        "2",
        "--block-out-channels",
        "8,16",
        "--out",
        str(tmp_path / "t"),
    ]
    assert main([*train, *common]) == 0
    distill = [
        "distill",
        "--teacher",
        str(tmp_path / "t"),
        "--out",
        str(tmp_path / "s"),
        "--trajectory-fraction",
        "0.5",
    ]
    assert main([*distill, "--trajectory-steps", "4", *common]) == 0
    teacher, student = load(tmp_path / "t"), load(tmp_path / "s")
    assert teacher.meta.process == student.meta.process == "flow" and teacher.meta.prediction_type == "flow_prediction"
    assert teacher.process.shift == 2.0 and teacher.meta.training["prediction"] is None
    for sampler in ("euler", "heun", "dpm++"):
        out = tmp_path / f"{sampler}.png"
        assert main(["sample", "--model", str(tmp_path / "s"), "--out", str(out), "--sampler", sampler, "--quiet"]) == 0
        assert out.stat().st_size > 0
