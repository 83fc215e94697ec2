import math

import pytest
import torch

from cfgdistill.errors import UserError
from cfgdistill.guidance import check_guidance, guided
from cfgdistill.guidance.rules import cfg


def cfg_prediction(model, x_t, t, cond, s, negative=None):
    return guided(model, s, negative=negative)(x_t, t, cond)


class Recorder:
    """A denoiser callable that remembers every call; cond None means unconditional."""

    def __init__(self, with_null: bool):
        self.calls = []
        if with_null:
            self.null_condition = lambda cond: torch.full_like(cond, -1)

    def __call__(self, x_t, t, cond):
        self.calls.append(None if cond is None else cond.clone())
        shift = torch.zeros(x_t.shape[0]) if cond is None else cond.float()
        return x_t * 0.5 + shift.view(-1, 1, 1, 1) + t.float().view(-1, 1, 1, 1) / 1000


def test_cfg_matches_the_formula_elementwise():
    torch.manual_seed(0)
    uncond, cond = torch.randn(4, 1, 3, 3), torch.randn(4, 1, 3, 3)
    s = torch.tensor([0.0, 1.0, 2.5, -1.0])
    out = cfg(cond, uncond, s)
    for i in range(4):
        expected = uncond[i] + float(s[i]) * (cond[i] - uncond[i])
        assert torch.allclose(out[i], expected)


def test_cfg_at_zero_is_uncond_and_at_one_is_cond():
    torch.manual_seed(0)
    uncond, cond = torch.randn(2, 1, 4, 4), torch.randn(2, 1, 4, 4)
    assert torch.equal(cfg(cond, uncond, 0.0), uncond)
    assert torch.allclose(cfg(cond, uncond, 1.0), cond)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_guidance_must_be_finite(bad):
    with pytest.raises(UserError, match="finite"):
        check_guidance(bad)


def test_batched_cfg_equals_two_separate_passes(teacher):
    torch.manual_seed(1)
    x_t, t, y = torch.randn(6, 1, 8, 8), torch.randint(0, 1000, (6,)), torch.arange(6)
    with torch.no_grad():
        batched = cfg_prediction(teacher, x_t, t, y, 3.0)
        cond = teacher(x_t, t, y)
        uncond = teacher(x_t, t, None)
    assert torch.allclose(batched, uncond + 3.0 * (cond - uncond), atol=1e-5)
    assert not torch.allclose(cond, uncond, atol=1e-3)  # the check would be empty otherwise


def test_one_batched_call_for_guided_scales():
    model = Recorder(with_null=True)
    x_t, t, y = torch.randn(3, 1, 2, 2), torch.tensor([5, 5, 5]), torch.tensor([1, 2, 3])
    cfg_prediction(model, x_t, t, y, 2.0)
    assert len(model.calls) == 1
    assert model.calls[0].tolist() == [1, 2, 3, -1, -1, -1]


def test_s_one_runs_only_cond_and_s_zero_only_uncond():
    model = Recorder(with_null=True)
    x_t, t, y = torch.randn(3, 1, 2, 2), torch.tensor([5, 5, 5]), torch.tensor([1, 2, 3])
    out1 = cfg_prediction(model, x_t, t, y, 1.0)
    out0 = cfg_prediction(model, x_t, t, y, 0.0)
    assert [None if c is None else c.tolist() for c in model.calls] == [[1, 2, 3], None]
    assert torch.equal(out1, model(x_t, t, y))
    assert torch.equal(out0, model(x_t, t, None))


def test_plain_callable_gets_cond_and_none():
    model = Recorder(with_null=False)
    x_t, t, y = torch.randn(2, 1, 2, 2), torch.tensor([3, 3]), torch.tensor([4, 7])
    out = cfg_prediction(model, x_t, t, y, 3.0)
    assert len(model.calls) == 2 and model.calls[0] is None
    expected = model(x_t, t, None) + 3.0 * (model(x_t, t, y) - model(x_t, t, None))
    assert torch.allclose(out, expected)


def test_negative_condition_replaces_uncond():
    model = Recorder(with_null=True)
    x_t, t = torch.randn(2, 1, 2, 2), torch.tensor([3, 3])
    pos, neg = torch.tensor([4, 7]), torch.tensor([2, 2])
    out = cfg_prediction(model, x_t, t, pos, 2.0, negative=neg)
    assert model.calls[0].tolist() == [4, 7, 2, 2]
    assert torch.allclose(out, model(x_t, t, neg) + 2.0 * (model(x_t, t, pos) - model(x_t, t, neg)))


def test_a_new_rule_is_one_function_and_one_registry_line(monkeypatch, tmp_path):
    """A toy rule, registered in one line, is sampled with and distilled against, and named in the student."""
    from conftest import tiny_denoiser

    from cfgdistill import guidance
    from cfgdistill.checkpoint import Checkpoint, load
    from cfgdistill.commands.distill import distill
    from cfgdistill.config import DistillConfig, RunOptions
    from cfgdistill.data import load_dataset
    from cfgdistill.guidance.rules import per_sample
    from cfgdistill.networks import make_student
    from cfgdistill.objectives import GuidanceDistillation
    from cfgdistill.processes import VP

    def halfway(pred_cond, pred_uncond, s, **context):  # half of CFG's correction
        return pred_uncond + 0.5 * per_sample(s, pred_cond) * (pred_cond - pred_uncond)

    monkeypatch.setitem(guidance.RULES, "halfway", halfway)
    teacher, process = tiny_denoiser(), VP.create("epsilon")
    x_t, t, y = torch.randn(4, 1, 8, 8), torch.tensor([10, 300, 600, 900]), torch.arange(4)
    with torch.no_grad():
        pred_cond, pred_uncond = teacher(x_t, t, y), teacher(x_t, t, None)
        assert torch.allclose(guided(teacher, 3.0, "halfway")(x_t, t, y), pred_uncond + 1.5 * (pred_cond - pred_uncond))

    data = load_dataset("digits", "train")
    checkpoint = Checkpoint.create(teacher, process, kind="teacher", dataset=data, training={})
    config = DistillConfig(steps=1, batch_size=8, guider="halfway")
    student = distill(checkpoint, config, RunOptions(out=tmp_path / "s", quiet=True, validate_every=0))
    assert student.meta.guidance.rule == "halfway" and load(tmp_path / "s").meta.guidance.rule == "halfway"

    objective = GuidanceDistillation(teacher, process, checkpoint.conditioning, config, halfway)
    s = torch.tensor([1.0, 2.0, 4.0, 6.0])
    unknown = torch.full_like(x_t, float("nan"))
    rows = {"x_t": x_t, "t": t, "cond": y, "s": s, "pred_cond": unknown, "pred_uncond": unknown}
    fresh = make_student(teacher, (1.0, 6.0))
    with torch.no_grad():
        expected = torch.mean((fresh(x_t, t, y, s=s.flatten()) - halfway(pred_cond, pred_uncond, s.flatten())) ** 2)
        assert torch.allclose(objective.loss(fresh, rows), expected, rtol=1e-5)
    with pytest.raises(UserError, match="unknown guidance rule 'nope'"):
        distill(checkpoint, DistillConfig(steps=1, guider="nope"))
