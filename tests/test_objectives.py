"""The distillation objective against slow references: loss spaces, weights, scales per row, teacher paths."""

import pytest
import torch
from conftest import tiny_denoiser

from cfgdistill.conditioning import ClassConditioning
from cfgdistill.config import DistillConfig
from cfgdistill.data import ImageDataset, load_dataset
from cfgdistill.errors import UserError
from cfgdistill.guidance import guided
from cfgdistill.guidance.rules import cfg
from cfgdistill.guidance.sampling import denoise
from cfgdistill.networks import make_student
from cfgdistill.objectives import GuidanceDistillation
from cfgdistill.objectives.guidance_distillation import guidance_size
from cfgdistill.objectives.trajectories import TeacherTrajectories
from cfgdistill.processes import VP

CLASSES = ClassConditioning([str(d) for d in range(10)])


def cfg_prediction(model, x_t, t, cond, s):
    return guided(model, s)(x_t, t, cond)


def DistillObjective(teacher, process, config, dataset=None):
    return GuidanceDistillation(teacher, process, CLASSES, config, cfg, dataset)


def without_teacher(rows: dict) -> dict:
    """Rows as DistillObjective.draw gives noised data: one s per row, the teacher's outputs still to compute."""
    unknown = torch.full_like(rows["x_t"], float("nan"))
    return {**rows, "pred_cond": unknown, "pred_uncond": unknown}


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_eps_space_loss_is_the_mse_of_the_noise_each_prediction_implies(prediction):
    """Slow reference: each row's prediction to x_0, then to eps, as a DDIM step does; the loss is their mean
    squared gap."""
    schedule = VP.create(prediction)
    teacher = tiny_denoiser()
    student = make_student(tiny_denoiser(seed=1), (0, 6))
    g = torch.Generator().manual_seed(0)
    n = 6
    rows = {
        "x_t": torch.randn(n, 1, 8, 8, generator=g),
        "t": torch.randint(50, 950, (n,), generator=g),
        "cond": torch.randint(0, 10, (n,), generator=g),
        "s": 6 * torch.rand(n, generator=g),
    }
    with torch.no_grad():
        target = cfg_prediction(teacher, rows["x_t"], rows["t"], rows["cond"], rows["s"])
        pred = student(rows["x_t"], rows["t"], rows["cond"], rows["s"])
        objective = DistillObjective(teacher, schedule, DistillConfig(loss_space="eps"))
        loss = objective.loss(student, without_teacher(rows))
    reference = []
    for i in range(n):
        a = schedule.alphas_cumprod[rows["t"][i]]
        x_t = rows["x_t"][i]

        def eps_of(out):
            if prediction == "epsilon":
                return out
            x_0 = a.sqrt() * x_t - (1 - a).sqrt() * out
            return (x_t - a.sqrt() * x_0) / (1 - a).sqrt()

        reference.append(torch.mean((eps_of(pred[i]) - eps_of(target[i])) ** 2))
    assert torch.allclose(loss, torch.stack(reference).mean(), rtol=1e-4)
    plain = DistillObjective(teacher, schedule, DistillConfig()).loss(student, without_teacher(rows))
    assert torch.allclose(plain, torch.mean((pred - target) ** 2))
    assert prediction == "epsilon" or not torch.allclose(loss, plain)


def test_guidance_size_is_the_teacher_mean_squared_guidance_direction():
    """Slow reference: separate cond and uncond passes at each grid t, with the function's own noise draws."""
    schedule, teacher = VP.create("v_prediction"), tiny_denoiser()
    data, conditioning = load_dataset("digits", "train"), CLASSES
    size = guidance_size(teacher, schedule, conditioning, data, points=4, rows=8)
    assert size.shape == (1000,) and (size > 0).all()
    g = torch.Generator().manual_seed(0)
    index = [round(i * (len(data) - 1) / 7) for i in range(8)]  # 8 rows from first to last
    x_0, labels = data.images[index], data.labels[index]
    measured = {}
    with torch.no_grad():
        for t in (0, 333, 666, 999):
            t_rows = torch.full((8,), t)
            x_t = schedule.add_noise(x_0, torch.randn(x_0.shape, generator=g), t_rows)
            measured[t] = torch.mean((teacher(x_t, t_rows, labels) - teacher(x_t, t_rows, torch.full((8,), 10))) ** 2)
    for t in (0, 333, 666, 999):
        assert torch.allclose(size[t], measured[t], rtol=1e-3)
    assert torch.allclose(size[500], (size[333] * size[666]).sqrt(), rtol=0.02)  # linear in log between grid points


def test_guidance_size_measures_every_class_of_a_folder_sorted_by_class():
    data = load_dataset("digits", "train")
    order = data.labels.argsort(stable=True)
    conditioning, seen = ClassConditioning(CLASSES.class_names), []
    for_classes = conditioning.for_classes
    conditioning.for_classes = lambda labels: seen.append(labels) or for_classes(labels)
    by_class = ImageDataset(data.name, data.images[order], data.labels[order], data.class_names)
    guidance_size(tiny_denoiser(), VP.create("v_prediction"), conditioning, by_class, points=2, rows=64)
    assert torch.bincount(seen[0], minlength=10).min() >= 5  # about 6 of each class, not 64 zeros


def test_guidance_space_loss_divides_each_row_by_the_guidance_correction_it_asks_for():
    schedule, teacher = VP.create("v_prediction"), tiny_denoiser()
    data = load_dataset("digits", "train")
    objective = DistillObjective(teacher, schedule, DistillConfig(loss_space="guidance"), data)
    student = make_student(tiny_denoiser(seed=1), (0, 6))
    g = torch.Generator().manual_seed(0)
    rows = {
        "x_t": torch.randn(6, 1, 8, 8, generator=g),
        "t": torch.tensor([0, 10, 400, 600, 900, 999]),
        "cond": torch.randint(0, 10, (6,), generator=g),
        "s": 6 * torch.rand(6, generator=g),
    }
    with torch.no_grad():
        target = cfg_prediction(teacher, rows["x_t"], rows["t"], rows["cond"], rows["s"])
        pred = student(rows["x_t"], rows["t"], rows["cond"], rows["s"])
        loss = objective.loss(student, without_teacher(rows))
    rms = guidance_size(teacher, schedule, CLASSES, data).sqrt()
    reference = []
    for i in range(6):
        s, floor = rows["s"][i].item(), rms.mean().item()
        weight = 1 / (floor + abs(s - 1) * rms[rows["t"][i]].item())
        mean_over_t = sum(1 / (floor + abs(s - 1) * r) for r in rms.tolist()) / len(rms)  # each s averages 1 over t
        reference.append(torch.mean((pred[i] - target[i]) ** 2) * weight / mean_over_t)
    assert torch.allclose(loss, torch.stack(reference).mean(), rtol=1e-5)
    assert rms.max() > 1.1 * rms.min()  # the weights do differ over t
    one = {"x_t": rows["x_t"][:2], "t": torch.tensor([10, 999]), "cond": rows["cond"][:2], "s": torch.ones(2)}
    with torch.no_grad():
        flat = objective.loss(student, without_teacher(one))
        plain = DistillObjective(teacher, schedule, DistillConfig()).loss(student, without_teacher(one))
    assert torch.allclose(flat, plain, rtol=1e-5)  # at s = 1 there is no correction: v space
    with pytest.raises(ValueError, match="dataset"):
        DistillObjective(teacher, schedule, DistillConfig(loss_space="guidance"))


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_teacher_paths_are_the_ddim_sampler_states(prediction):
    """Rows on the teacher's paths, stepped once per draw, visit exactly the states of guided DDIM sampling."""
    schedule, steps, s = VP.create(prediction), 5, 3.0
    teacher = tiny_denoiser()
    config = DistillConfig(
        guidance_min=s, guidance_max=s, trajectory_fraction=1.0, trajectory_steps=steps, p_uncond=0.0
    )
    paths = TeacherTrajectories(teacher, schedule, CLASSES, config, cfg)
    generator = torch.Generator().manual_seed(0)
    paths.state = paths.fresh(4, (1, 8, 8), generator)  # every path at its first step
    x_T, labels = paths.state["x_t"].clone(), paths.state["cond"].clone()
    rows = [paths.draw(4, (1, 8, 8), generator) for _ in range(steps)]

    sampler, reference = schedule.sampler("ddim"), []
    denoise(guided(teacher, s), sampler, x_T, labels, steps=steps, callback=lambda i, t, x: reference.append(x))
    assert torch.equal(rows[0]["x_t"], x_T)
    for k in range(steps):
        assert torch.equal(rows[k]["t"], sampler.timesteps[k].long().expand(4))
        assert torch.equal(rows[k]["cond"], labels)
        with torch.no_grad():
            prediction = cfg_prediction(teacher, rows[k]["x_t"], rows[k]["t"], labels, s)
        assert torch.allclose(cfg(rows[k]["pred_cond"], rows[k]["pred_uncond"], s), prediction, atol=1e-6)
    for k in range(1, steps):
        assert torch.allclose(rows[k]["x_t"], reference[k - 1], atol=1e-5)
    last = paths.path.step(prediction, rows[-1]["x_t"], torch.full((4,), steps - 1), torch.ones(4, dtype=torch.bool))
    assert torch.allclose(last, reference[-1], atol=1e-5)
    assert torch.equal(paths.state["k"], torch.zeros(4, dtype=torch.long))  # finished paths start again from noise
    assert not torch.allclose(paths.state["x_t"], x_T)


def test_s_one_share_puts_that_share_of_noised_rows_at_exactly_one_and_the_rest_uniform():
    x_0, labels = torch.zeros(400, 1, 8, 8), torch.arange(400) % 10
    config = DistillConfig(guidance_min=0.0, guidance_max=6.0, s_one_share=0.25)
    s = DistillObjective(tiny_denoiser(), VP.create(), config).draw(x_0, labels, torch.Generator().manual_seed(0))["s"]
    assert s.shape == (400,) and (s[:100] == 1).all()
    rest = s[100:]
    assert (rest != 1).all() and ((rest >= 0) & (rest < 6)).all() and abs(rest.mean().item() - 3) < 0.4
    plain = DistillObjective(tiny_denoiser(), VP.create(), DistillConfig(guidance_min=0.0, guidance_max=6.0))
    assert not (plain.draw(x_0, labels, torch.Generator().manual_seed(0))["s"] == 1).any()
    with pytest.raises(UserError, match=r"s = 1 inside the guidance range \[2, 6\]"):
        DistillConfig(guidance_min=2.0, s_one_share=0.1).validate()
