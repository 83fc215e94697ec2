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


@pytest.mark.parametrize("text", [True, False], ids=["text", "class"])
def test_a_joint_negative_input_sees_the_positive_and_adds_nothing_for_the_null_negative(text):
    teacher = tiny_denoiser(text_dim=TEXT_DIM) if text else tiny_denoiser()
    student = teacher.with_guidance((1.0, 6.0), negatives=True, joint=True)
    pos, neg = (POS, NEG) if text else (torch.tensor([1, 2, 3, 4]), torch.tensor([5, 6, 7, 8]))
    null = student.null_condition(pos)
    with torch.no_grad():
        assert torch.equal(student(X, T, pos, s=3.0, negative=neg), student(X, T, pos, s=3.0))  # zero-initialised
        student.negative_in.mlp.linear_2.weight.normal_()
        alone = student(X, T, pos, s=3.0)
        assert torch.equal(alone, student(X, T, pos, s=3.0, negative=null))
        assert not torch.allclose(alone, student(X, T, pos, s=3.0, negative=neg), atol=1e-3)
        assert torch.equal(student(X, T, pos, s=1.0), student(X, T, pos, s=1.0, negative=neg))
        # unlike an additive input, what the negative adds depends on the positive it is paired with
        offset = lambda p: student.negative_offset(p, neg, X.dtype)
        other = pos.flip(0)
        assert not torch.allclose(offset(pos) - offset(other), torch.zeros(()), atol=1e-4)


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


def test_composed_negatives_name_the_image_class_or_another_and_negate_the_other(objective_parts):
    """With --composed-negatives 1, every non-null negative row's positive is "A or B" (A its class) and its
    negative one of B's prompts: the row's target keeps A and removes B, which the positive also covers."""
    teacher, conditioning = objective_parts
    config = DistillConfig(negatives=0.5, composed_negatives=1.0, p_uncond=0.0).validate()
    labels = torch.randint(0, 10, (64,), generator=g)
    rows = GuidanceDistillation(teacher, VP.create("epsilon"), conditioning, config, cfg).draw(
        torch.randn(64, 1, 8, 8, generator=g), labels, g
    )
    names, (table, _, _, offsets) = conditioning.class_names, conditioning.table

    def class_of(embedding):  # the class whose training prompts include this embedding
        hit = torch.isclose(table, embedding).all(1).nonzero().flatten().item()
        return int((offsets <= hit).sum()) - 1

    words = {
        c: [p for p in conditioning.train_prompts[c] if f"a photo of {p}" in conditioning.train_prompts[c]]
        for c in names
    }
    composed = (rows["negative"] != conditioning.null).any(1)
    assert 0.3 < composed.float().mean() < 0.7
    for i in range(64):
        if not composed[i]:  # a null negative: the positive is one of its own class's training prompts
            assert class_of(rows["cond"][i]) == labels[i]
            continue
        other = class_of(rows["negative"][i])
        assert other != labels[i]
        a, b = words[names[labels[i]]], words[names[other]]
        either = [f"{x} or {y}" for x in a for y in b] + [f"{y} or {x}" for x in a for y in b]
        assert torch.isclose(conditioning.encode(prompts=either), rows["cond"][i]).all(1).any()


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
