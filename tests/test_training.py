import pytest
import torch
from conftest import tiny_denoiser

from cfgdistill.checkpoint import Checkpoint
from cfgdistill.commands.distill import distill
from cfgdistill.commands.train import train_teacher
from cfgdistill.conditioning import ClassConditioning
from cfgdistill.config import DistillConfig, RunOptions, TrainConfig
from cfgdistill.data import load_dataset, load_digits, split
from cfgdistill.errors import UserError
from cfgdistill.guidance import guided
from cfgdistill.guidance.rules import cfg
from cfgdistill.networks import make_student
from cfgdistill.objectives import GuidanceDistillation
from cfgdistill.processes import VP
from cfgdistill.training.loop import global_batch

CLASSES = ClassConditioning([str(d) for d in range(10)])


def cfg_prediction(model, x_t, t, cond, s):
    return guided(model, s)(x_t, t, cond)


def DistillObjective(teacher, process, config, dataset=None):
    return GuidanceDistillation(teacher, process, CLASSES, config, cfg, dataset)


def test_digits_are_scaled_to_minus_one_one_with_ten_classes():
    data = load_digits()
    assert data.images.shape == (1797, 1, 8, 8)
    assert data.images.min() == -1 and data.images.max() == 1
    assert sorted(data.labels.unique().tolist()) == list(range(10))
    train, test = split(data)
    assert len(train) + len(test) == 1797 and len(test) == 360
    assert not set(train.labels.tolist()) ^ set(test.labels.tolist())


def test_unknown_dataset_is_a_user_error():
    with pytest.raises(UserError, match="unknown dataset"):
        load_dataset("imagenet")


def test_condition_dropout_rate_and_null_class():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (20000,), generator=g)
    dropped = CLASSES.draw(labels, g, 0.1)
    rate = (dropped == 10).float().mean().item()
    assert 0.09 < rate < 0.11
    kept = dropped != 10
    assert torch.equal(dropped[kept], labels[kept])
    assert torch.equal(CLASSES.draw(labels, g, 0.0), labels)


def test_v_prediction_target_is_the_velocity():
    schedule = VP.create("v_prediction")
    g = torch.Generator().manual_seed(0)
    x_0 = torch.randn(4, 1, 8, 8)
    x_t, t, eps = schedule.noisy_batch(x_0, g)
    a = schedule.alphas_cumprod[t].sqrt().view(-1, 1, 1, 1)
    sigma = (1 - schedule.alphas_cumprod[t]).sqrt().view(-1, 1, 1, 1)
    assert torch.allclose(x_t, a * x_0 + sigma * eps, atol=1e-5)
    assert torch.allclose(schedule.target(x_0, eps, t), a * eps - sigma * x_0, atol=1e-5)


def test_bad_training_settings_are_refused():
    with pytest.raises(UserError, match="p-uncond"):
        TrainConfig(p_uncond=1.5).validate()
    with pytest.raises(UserError, match="guidance-min"):
        DistillConfig(guidance_min=5, guidance_max=2).validate()
    with pytest.raises(UserError, match="steps"):
        DistillConfig(steps=0).validate()
    with pytest.raises(UserError, match="loss-space"):
        DistillConfig(loss_space="x0").validate()


def gap(student, teacher, schedule, data, seed=123):
    """Mean squared student–teacher gap on fixed (x_t, t, s, labels) that training never draws."""
    g = torch.Generator().manual_seed(seed)
    x_0, labels = data.images[:256], data.labels[:256]
    x_t, t, _ = schedule.noisy_batch(x_0, g)
    s = 1 + 5 * torch.rand(len(labels), generator=g)
    with torch.no_grad():
        return torch.mean((student(x_t, t, labels, s) - cfg_prediction(teacher, x_t, t, labels, s)) ** 2).item()


@pytest.mark.parametrize(
    "prediction, loss_space", [("epsilon", "prediction"), ("v_prediction", "eps"), ("v_prediction", "guidance")]
)
def test_distillation_shrinks_the_student_teacher_gap(prediction, loss_space):
    data = load_dataset("digits", "train")
    schedule = VP.create(prediction)
    teacher = Checkpoint.create(tiny_denoiser(), schedule, kind="teacher", dataset=data, training={})
    before = gap(make_student(teacher.model, (1, 6)), teacher.model, schedule, data)
    config = DistillConfig(steps=80, lr=2e-3, ema_decay=0.9, loss_space=loss_space)
    student = distill(teacher, config, RunOptions(quiet=True), data)
    after = gap(student.model, teacher.model, schedule, data)
    assert student.kind == "student"
    assert after < 0.5 * before, (before, after)


def test_distillation_on_teacher_paths_shrinks_the_gap():
    data = load_dataset("digits", "train")
    schedule = VP.create()
    teacher = Checkpoint.create(tiny_denoiser(), schedule, kind="teacher", dataset=data, training={})
    before = gap(make_student(teacher.model, (1, 6)), teacher.model, schedule, data)
    config = DistillConfig(steps=80, lr=2e-3, ema_decay=0.9, trajectory_fraction=0.5, trajectory_steps=10)
    student = distill(teacher, config, RunOptions(quiet=True), data)
    assert gap(student.model, teacher.model, schedule, data) < 0.5 * before


def test_distillation_with_the_same_seed_gives_the_same_student():
    data = load_dataset("digits", "train")
    teacher = Checkpoint.create(tiny_denoiser(), VP.create(), kind="teacher", dataset=data, training={})
    config = DistillConfig(steps=2, batch_size=8, trajectory_fraction=0.5, trajectory_steps=4)
    first, second = (distill(teacher, config, RunOptions(quiet=True), data).model for _ in range(2))
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))


def test_distilling_a_student_is_refused():
    data = load_dataset("digits", "train")
    student = Checkpoint.create(tiny_denoiser(), VP.create(), kind="student", dataset=data, training={})
    with pytest.raises(UserError, match="needs a teacher"):
        distill(student, DistillConfig(steps=1), RunOptions(quiet=True), data)


@pytest.mark.parametrize(
    "prediction, scale_shift", [("epsilon", False), ("v_prediction", False), ("v_prediction", True)]
)
def test_teacher_training_lowers_the_loss(prediction, scale_shift):
    config = TrainConfig(
        steps=40,
        batch_size=32,
        block_out_channels=[8, 16],
        seed=1,
        ema_decay=0.0,
        prediction=prediction,
        scale_shift=scale_shift,
    )
    data = load_dataset("digits", "train")
    schedule = VP.create(prediction)
    untrained = tiny_denoiser(seed=1)

    def loss(model):
        g = torch.Generator().manual_seed(5)
        x_0 = data.images[:256]
        x_t, t, eps = schedule.noisy_batch(x_0, g)
        with torch.no_grad():
            return torch.mean((model(x_t, t, data.labels[:256]) - schedule.target(x_0, eps, t)) ** 2).item()

    trained = train_teacher(config, RunOptions(quiet=True), data)
    assert trained.model.config.scale_shift == scale_shift
    assert loss(trained.model) < 0.8 * loss(untrained)


def test_batches_cover_an_epoch_without_repeats():
    data = load_dataset("digits", "train").subset(torch.arange(10))
    for epoch in range(3):  # steps 1-2, 3-4, 5-6: each pair is one epoch
        seen = torch.cat([global_batch(data, 5, seed=0, step=2 * epoch + k)[1] for k in (1, 2)])
        assert sorted(seen.tolist()) == sorted(data.labels.tolist())
    first, again = global_batch(data, 5, 0, 1)[0], global_batch(data, 5, 0, 1)[0]
    assert torch.equal(first, again)
    assert not torch.equal(global_batch(data, 5, 0, 3)[0], first)  # epochs are shuffled anew


def test_distillation_on_noised_data_and_teacher_paths_shrinks_the_gap():
    data = load_dataset("digits", "train")
    schedule = VP.create()
    teacher = Checkpoint.create(tiny_denoiser(), schedule, kind="teacher", dataset=data, training={})
    before = gap(make_student(teacher.model, (1, 6)), teacher.model, schedule, data)
    config = DistillConfig(
        steps=80, batch_size=32, lr=2e-3, ema_decay=0.9, trajectory_fraction=0.5, trajectory_steps=10
    )
    student = distill(teacher, config, RunOptions(quiet=True), data)
    assert gap(student.model, teacher.model, schedule, data) < 0.5 * before
