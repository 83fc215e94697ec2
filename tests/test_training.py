import pytest
import torch

from cfgdistill.checkpoint import Checkpoint
from cfgdistill.data import load_dataset, split, load_digits
from cfgdistill.diffusion import make_noise_schedule, noisy_batch, target
from cfgdistill.distill import DistillConfig, distill
from cfgdistill.errors import UserError
from cfgdistill.guidance import cfg_prediction
from cfgdistill.loop import RunOptions, global_batch
from cfgdistill.models import make_student
from cfgdistill.conditioning import ClassConditioning
from cfgdistill.train import TrainConfig, train_teacher

from conftest import tiny_denoiser


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
    dropped = ClassConditioning(10, 0.1).draw(labels, g)
    rate = (dropped == 10).float().mean().item()
    assert 0.09 < rate < 0.11
    kept = dropped != 10
    assert torch.equal(dropped[kept], labels[kept])
    assert torch.equal(ClassConditioning(10, 0.0).draw(labels, g), labels)


def test_v_prediction_target_is_the_velocity():
    schedule = make_noise_schedule("v_prediction")
    g = torch.Generator().manual_seed(0)
    x_0 = torch.randn(4, 1, 8, 8)
    x_t, t, eps = noisy_batch(schedule, x_0, g)
    a = schedule.alphas_cumprod[t].sqrt().view(-1, 1, 1, 1)
    sigma = (1 - schedule.alphas_cumprod[t]).sqrt().view(-1, 1, 1, 1)
    assert torch.allclose(x_t, a * x_0 + sigma * eps, atol=1e-5)
    assert torch.allclose(target(schedule, x_0, eps, t), a * eps - sigma * x_0, atol=1e-5)


def test_bad_training_settings_are_refused():
    with pytest.raises(UserError, match="p-uncond"):
        TrainConfig(p_uncond=1.5).validate()
    with pytest.raises(UserError, match="guidance-min"):
        DistillConfig(guidance_min=5, guidance_max=2).validate()
    with pytest.raises(UserError, match="steps"):
        DistillConfig(steps=0).validate()


def gap(student, teacher, schedule, data, seed=123):
    """Mean squared student–teacher gap on fixed (x_t, t, s, labels) that training never draws."""
    g = torch.Generator().manual_seed(seed)
    x_0, labels = data.images[:256], data.labels[:256]
    x_t, t, _ = noisy_batch(schedule, x_0, g)
    s = 1 + 5 * torch.rand(len(labels), generator=g)
    with torch.no_grad():
        return torch.mean((student(x_t, t, labels, s) - cfg_prediction(teacher, x_t, t, labels, s)) ** 2).item()


def test_distillation_shrinks_the_student_teacher_gap():
    data = load_dataset("digits", "train")
    schedule = make_noise_schedule()
    teacher = Checkpoint.create(tiny_denoiser(), schedule, kind="teacher", dataset=data, training={})
    before = gap(make_student(teacher.model, (1, 6)), teacher.model, schedule, data)
    student = distill(teacher, DistillConfig(steps=80, lr=2e-3, ema_decay=0.9), data, run=RunOptions(progress=False))
    after = gap(student.model, teacher.model, schedule, data)
    assert student.kind == "student"
    assert after < 0.5 * before, (before, after)


def test_distilling_a_student_is_refused():
    data = load_dataset("digits", "train")
    student = Checkpoint.create(tiny_denoiser(), make_noise_schedule(), kind="student", dataset=data, training={})
    with pytest.raises(UserError, match="needs a teacher"):
        distill(student, DistillConfig(steps=1), data, run=RunOptions(progress=False))


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_teacher_training_lowers_the_loss(prediction):
    config = TrainConfig(steps=40, batch_size=32, block_out_channels=[8, 16], seed=1, ema_decay=0.0, prediction=prediction)
    data = load_dataset("digits", "train")
    schedule = make_noise_schedule(prediction)
    untrained = tiny_denoiser(seed=1)

    def loss(model):
        g = torch.Generator().manual_seed(5)
        x_0 = data.images[:256]
        x_t, t, eps = noisy_batch(schedule, x_0, g)
        with torch.no_grad():
            return torch.mean((model(x_t, t, data.labels[:256]) - target(schedule, x_0, eps, t)) ** 2).item()

    trained = train_teacher(config, data, run=RunOptions(progress=False))
    assert loss(trained.model) < 0.8 * loss(untrained)


def test_batches_cover_an_epoch_without_repeats():
    data = load_dataset("digits", "train").subset(torch.arange(10))
    for epoch in range(3):  # steps 1-2, 3-4, 5-6: each pair is one epoch
        seen = torch.cat([global_batch(data, 5, seed=0, step=2 * epoch + k)[1] for k in (1, 2)])
        assert sorted(seen.tolist()) == sorted(data.labels.tolist())
    first, again = global_batch(data, 5, 0, 1)[0], global_batch(data, 5, 0, 1)[0]
    assert torch.equal(first, again)
    assert not torch.equal(global_batch(data, 5, 0, 3)[0], first)  # epochs are shuffled anew
