import pytest
import torch

from cfgdistill.config import SAMPLERS
from cfgdistill.errors import ExtrapolationWarning, UserError
from cfgdistill.evaluation.compare import count_rows
from cfgdistill.guidance.sampling import generate, initial_noise
from cfgdistill.networks import make_student


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_a_sample_does_not_depend_on_batch_size(teacher, schedule, labels, sampler):
    whole = generate(teacher, schedule, labels, s=3.0, steps=4, sampler=sampler, seed=7)
    pieces = generate(teacher, schedule, labels, s=3.0, steps=4, sampler=sampler, seed=7, batch_size=3)
    assert torch.allclose(whole, pieces, atol=1e-5)
    assert whole.shape == (20, 1, 8, 8) and whole.abs().max() <= 1


def test_image_i_is_seeded_with_seed_plus_i(teacher, schedule, labels):
    all_images = generate(teacher, schedule, labels, s=2.0, steps=3, seed=0)
    tail = generate(teacher, schedule, labels[5:], s=2.0, steps=3, seed=5)
    assert torch.allclose(all_images[5:], tail, atol=1e-5)
    assert torch.equal(initial_noise([3], (1, 8, 8))[0], initial_noise([1, 2, 3], (1, 8, 8))[2])


def test_guidance_changes_the_samples(teacher, schedule, labels):
    a = generate(teacher, schedule, labels, s=1.0, steps=3)
    b = generate(teacher, schedule, labels, s=4.0, steps=3)
    assert not torch.allclose(a, b, atol=1e-3)


@pytest.mark.parametrize("s, rows_per_step", [(0.0, 1), (1.0, 1), (3.0, 2)])
def test_teacher_network_evaluations_per_image(teacher, schedule, labels, s, rows_per_step):
    with count_rows(teacher) as counter:
        generate(teacher, schedule, labels, s=s, steps=5)
    assert counter["rows"] == rows_per_step * 5 * len(labels)


def test_student_costs_one_pass_per_step_at_any_s(teacher, schedule, labels):
    student = make_student(teacher, (1.0, 6.0))
    for s in (2.0, 5.0):
        with count_rows(student) as counter:
            generate(student, schedule, labels, s=s, steps=5)
        assert counter["rows"] == 5 * len(labels)


def test_new_student_samples_like_the_conditional_teacher(teacher, schedule, labels):
    student = make_student(teacher, (1.0, 6.0))
    assert torch.equal(
        generate(student, schedule, labels, s=4.0, steps=4), generate(teacher, schedule, labels, s=1.0, steps=4)
    )


def test_a_user_callable_can_be_sampled(schedule):
    seen = []

    def model(x_t, t, cond):  # predicts eps = 0 for cond None, else a small constant
        seen.append(cond is None)
        return torch.zeros_like(x_t) if cond is None else torch.full_like(x_t, 0.1)

    out = generate(model, schedule, torch.zeros(4, dtype=torch.long), s=2.0, steps=3, shape=(1, 4, 4))
    assert out.shape == (4, 1, 4, 4)
    assert seen == [True, False] * 3  # uncond, then cond, each step
    uncond = generate(model, schedule, None, n=2, steps=3, shape=(1, 4, 4))
    assert uncond.shape == (2, 1, 4, 4) and seen[-1] is True


def test_extrapolated_s_warns_but_runs(teacher, schedule, labels):
    student = make_student(teacher, (1.0, 6.0))
    with pytest.warns(ExtrapolationWarning, match="extrapolated"):
        out = generate(student, schedule, labels, s=8.0, steps=2)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(s=float("nan")), "finite"),
        (dict(s=float("inf")), "finite"),
        (dict(steps=0), "steps"),
        (dict(sampler="heun9"), "unknown sampler"),
    ],
)
def test_bad_sampling_arguments(teacher, schedule, labels, kwargs, message):
    with pytest.raises(UserError, match=message):
        generate(teacher, schedule, labels, **kwargs)


def test_labels_outside_the_classes_are_refused(teacher, schedule):
    with pytest.raises(UserError, match="label 10"):
        generate(teacher, schedule, torch.tensor([1, 10]), s=2.0, steps=2)
    with pytest.raises(UserError, match="> 0"):
        generate(teacher, schedule, None, n=0, steps=2)
