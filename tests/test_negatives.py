"""Negative prompts in one pass: the student's negative input, its training target, its cost, its report."""

import json

import pytest
import torch
from conftest import tiny_denoiser

from cfgdistill.checkpoint import load
from cfgdistill.cli import main
from cfgdistill.conditioning import TEXT_DIM, TextConditioning
from cfgdistill.config import DistillConfig, EvaluateConfig
from cfgdistill.evaluation.compare import timed_sample
from cfgdistill.evaluation.markdown import markdown
from cfgdistill.evaluation.report import evaluate
from cfgdistill.guidance.rules import cfg
from cfgdistill.objectives import GuidanceDistillation
from cfgdistill.processes import VP

g = torch.Generator().manual_seed(0)
X, T = torch.randn(4, 1, 8, 8, generator=g), torch.tensor([10, 200, 500, 900])
POS, NEG = torch.randn(2, 4, TEXT_DIM, generator=g)


def test_a_new_negative_student_is_the_plain_student_and_no_negative_adds_nothing():
    teacher = tiny_denoiser(text_dim=TEXT_DIM)
    with torch.no_grad():
        teacher.null_text.normal_()
    torch.manual_seed(1)
    student = teacher.with_guidance((1.0, 6.0), negatives=True)
    torch.manual_seed(1)
    plain = teacher.with_guidance((1.0, 6.0))
    with torch.no_grad():
        assert torch.equal(student(X, T, POS, s=3.0, negative=NEG), plain(X, T, POS, s=3.0))  # zero-initialised
        student.negative_in.weight.normal_()
        alone = student(X, T, POS, s=3.0)
        assert torch.equal(alone, student(X, T, POS, s=3.0, negative=student.null_text.expand(4, -1)))
        assert not torch.allclose(alone, student(X, T, POS, s=3.0, negative=NEG), atol=1e-3)
        # at s = 1 every rule's target ignores the negative, and the input, scaled by s − 1, adds nothing
        assert torch.equal(student(X, T, POS, s=1.0), student(X, T, POS, s=1.0, negative=NEG))


def test_a_class_student_negates_a_class_and_its_null_row_adds_nothing():
    student = tiny_denoiser().with_guidance((1.0, 6.0), negatives=True)
    labels = torch.tensor([1, 2, 3, 4])
    with torch.no_grad():
        student.negative_in.weight[:-1].normal_()
        assert torch.equal(
            student(X, T, labels, s=2.0), student(X, T, labels, s=2.0, negative=torch.full_like(labels, 10))
        )
        assert not torch.allclose(student(X, T, labels, s=2.0), student(X, T, labels, s=2.0, negative=labels.flip(0)))


@pytest.fixture(scope="module")
def objective_parts():
    teacher = tiny_denoiser(text_dim=TEXT_DIM)
    conditioning = TextConditioning.for_dataset("digits", [str(i) for i in range(10)])
    with torch.no_grad():
        teacher.null_text.copy_(conditioning.null)
    return teacher, conditioning


@pytest.mark.parametrize("paths", [0.0, 0.5])
def test_each_row_is_trained_on_true_cfg_against_its_own_negative(objective_parts, paths):
    """Rows (noised data, and teacher paths) carry a negative: null for about 1 − share of them, a class prompt
    otherwise; the teacher's second branch is its prediction at that negative, and the target neg + s·(pos − neg)."""
    teacher, conditioning = objective_parts
    config = DistillConfig(negatives=0.5, trajectory_fraction=paths, trajectory_steps=4, p_uncond=0.0).validate()
    objective = GuidanceDistillation(teacher, VP.create("epsilon"), conditioning, config, cfg)
    rows = objective.draw(torch.randn(64, 1, 8, 8, generator=g), torch.randint(0, 10, (64,), generator=g), g)
    null = (rows["negative"] == conditioning.null).all(1)
    assert 0.3 < null.float().mean() < 0.7
    pred_cond, pred_neg = objective.teacher_outputs(rows)
    with torch.no_grad():
        assert torch.allclose(pred_cond, teacher(rows["x_t"], rows["t"], rows["cond"]), atol=1e-5)
        assert torch.allclose(pred_neg, teacher(rows["x_t"], rows["t"], rows["negative"]), atol=1e-5)
    student = teacher.with_guidance((1.0, 6.0), negatives=True)
    objective.loss(student, rows).backward()
    assert student.negative_in.weight.grad.abs().sum() > 0  # the negative input is trained
    plain = DistillConfig(trajectory_fraction=paths, trajectory_steps=4).validate()
    rows = GuidanceDistillation(teacher, VP.create("epsilon"), conditioning, plain, cfg).draw(
        torch.randn(8, 1, 8, 8), torch.zeros(8, dtype=torch.long), g
    )
    assert "negative" not in rows  # without --negatives, the rows (and their random draws) are as before


@pytest.fixture(scope="module")
def negative_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("negatives")
    quiet = ["--quiet", "--validate-every", "0", "--batch-size", "16", "--block-out-channels", "8,16"]
    train = ["train", "--data", "digits", "--conditioning", "text", "--out", str(root / "teacher"), "--steps", "3"]
    assert main([*train, *quiet]) == 0
    distill = ["distill", "--teacher", str(root / "teacher"), "--out", str(root / "student"), "--steps", "3"]
    assert main([*distill, "--negatives", "0.5", *quiet[:-2]]) == 0
    return root


def test_a_negative_student_takes_a_negative_prompt_in_one_pass_per_step(negative_runs, tmp_path):
    config = json.loads((negative_runs / "student" / "denoiser" / "config.json").read_text())
    assert config["negative_embedding"] is True
    args = ["--prompt", "an even digit", "--negative-prompt", "the digit 8", "--steps", "3", "--n", "2", "--quiet"]
    assert main(["sample", "--model", str(negative_runs / "student"), "--out", str(tmp_path / "s.png"), *args]) == 0
    teacher, student = load(negative_runs / "teacher"), load(negative_runs / "student")
    cond, negative = (teacher.conditioning.encode(prompts=[p] * 4) for p in ("an even digit", "the digit 8"))
    runs = {
        name: timed_sample(c.model, c.process, cond, 3.0, 3, negative=negative)
        for name, c in (("teacher", teacher), ("student", student))
    }
    assert runs["teacher"].nfe_per_image == 6 and runs["student"].nfe_per_image == 3
    assert not torch.equal(runs["student"].images, timed_sample(student.model, student.process, cond, 3.0, 3).images)


def test_evaluation_reports_negative_avoidance(negative_runs):
    teacher, student = load(negative_runs / "teacher"), load(negative_runs / "student")
    report = evaluate(teacher, student, EvaluateConfig(guidance=[3.0], steps=2, n=20, quiet=True)).report
    h = report["negatives"]
    assert h["prompts"] == 5 and h["samples_per_prompt"] == 4 and h["s"] == 3.0
    for key in ("teacher_without_rate", "teacher_rate", "student_rate"):
        assert 0 <= h[key] <= 1
        assert abs(sum(row[key] for row in h["per_prompt"]) / 5 - h[key]) < 1e-6  # equal samples per prompt
    assert h["per_prompt"][0]["negative_prompt"] == teacher.conditioning.class_prompts([8])[0]
    assert abs(h["gap"] - (h["student_rate"] - h["teacher_rate"])) < 1e-9
    assert "## Negative prompts (s = 3)" in markdown(report)
