"""The guiders beyond CFG (diffusers.guiders' maths) against their papers' formulas, written out here."""

import json

import numpy as np
import pytest
import torch

from cfgdistill import load as cfgdistill_load
from cfgdistill.cli import main
from cfgdistill.errors import UserError
from cfgdistill.guidance import RULES, guided, parse_options, predict_pair, rule_options
from cfgdistill.guidance.autoguide import GuidedPair
from cfgdistill.guidance.sampling import generate

g = torch.Generator().manual_seed(0)
COND, UNCOND = torch.randn(2, 3, 1, 4, 4, generator=g)


def dims(x):
    return x.flatten(1)


def rescaled(c, u, s, phi):
    """Lin et al. (2024), Algorithm 2: CFG, its std matched to the conditional's, mixed back by φ."""
    x = u + s * (c - u)
    std = lambda v: dims(v).std(1).view(-1, 1, 1, 1)  # noqa: E731
    return phi * x * std(c) / std(x) + (1 - phi) * x


@pytest.mark.parametrize("phi", [0.0, 0.7, 1.0])
def test_rescale_is_lin_et_al(phi):
    out = RULES["rescale"](COND, UNCOND, 4.0, phi=phi)
    assert torch.allclose(out, rescaled(COND, UNCOND, 4.0, phi), atol=1e-5)


def test_interval_guides_only_inside_its_noise_levels():
    """Progress p = 1 − t/1000 in [0.2, 0.6): CFG there, per row, the conditional prediction elsewhere."""
    t = torch.tensor([1000.0, 850.0, 800.0, 600.0, 401.0, 400.0, 0.0])[:, None]
    c, u = (x[:1].expand(len(t), -1, -1, -1) for x in (COND, UNCOND))
    out = RULES["interval"](c, u, 3.0, start=0.2, stop=0.6, t=t.squeeze(1))
    for row, level in enumerate(t.squeeze(1).tolist()):
        expected = u[row] + 3.0 * (c[row] - u[row]) if 0.2 <= (1000 - level) / 1000 < 0.6 else c[row]
        assert torch.allclose(out[row], expected, atol=1e-6), level


def test_interval_is_diffusers_classifier_free_guidance_on_a_uniform_grid():
    """At step i of N at t = T·(1 − i/N), the rule is diffusers' ClassifierFreeGuidance(start, stop)."""
    from diffusers.guiders import ClassifierFreeGuidance

    guider = ClassifierFreeGuidance(guidance_scale=3.0, start=0.2, stop=0.7)
    for step in range(10):
        t = torch.tensor(1000.0 * (1 - step / 10))
        guider.set_state(step, 10, t)
        expected = guider.forward(COND, UNCOND).pred
        out = RULES["interval"](COND, UNCOND, 3.0, start=0.2, stop=0.7, t=t)
        assert torch.allclose(out, expected, atol=1e-6), step


def test_cfg_zero_star_is_fan_et_al():
    """α* = ⟨c, u⟩ / ‖u‖² per image scales the unconditional branch; the first steps predict zero."""
    alpha = (dims(COND) * dims(UNCOND)).sum(1) / dims(UNCOND).square().sum(1)
    scaled = alpha.view(-1, 1, 1, 1) * UNCOND
    out = RULES["cfg-zero-star"](COND, UNCOND, 3.0, zero_init_steps=1, step=1)
    assert torch.allclose(out, scaled + 3.0 * (COND - scaled), atol=1e-5)
    assert torch.equal(RULES["cfg-zero-star"](COND, UNCOND, 3.0, zero_init_steps=1, step=0), torch.zeros_like(COND))


def apg_reference(c, u, s, eta, threshold, running=None, momentum=0.0):
    """Sadat et al. (2024), Algorithm 1, per image: Δ (with momentum), clipped, split along c."""
    diff = c - u + (momentum * running if running is not None else 0)
    norm = dims(diff).norm(dim=1).view(-1, 1, 1, 1)
    clipped = diff * torch.clamp(threshold / norm, max=1.0)
    unit = c / dims(c).norm(dim=1).view(-1, 1, 1, 1)
    parallel = (dims(clipped) * dims(unit)).sum(1).view(-1, 1, 1, 1) * unit
    return c + (s - 1) * (clipped - parallel + eta * parallel), diff


@pytest.mark.parametrize("eta, threshold", [(1.0, 100.0), (0.0, 100.0), (0.5, 1.0)])
def test_apg_is_sadat_et_al(eta, threshold):
    out = RULES["apg"](COND, UNCOND, 5.0, eta=eta, norm_threshold=threshold, momentum=0.0, state={}, step=0)
    assert torch.allclose(out, apg_reference(COND, UNCOND, 5.0, eta, threshold)[0], atol=1e-5)


def test_apg_momentum_runs_along_one_path():
    state, running = {}, None
    for step in range(3):
        c, u = COND * (1 + step), UNCOND - step
        out = RULES["apg"](c, u, 4.0, eta=0.0, norm_threshold=100.0, momentum=-0.5, state=state, step=step)
        expected, running = apg_reference(c, u, 4.0, 0.0, 100.0, running, -0.5)
        assert torch.allclose(out, expected, atol=1e-5), step


@pytest.mark.parametrize("name", ["rescale", "interval", "apg"])
def test_every_guider_is_conditional_at_s_1(name):
    options = rule_options(name)
    assert torch.allclose(RULES[name](COND, UNCOND, 1.0, state={}, step=0, steps=10, **options), COND, atol=1e-5)
    assert RULES[name].exact_at == {1.0: "cond"}


def test_options_are_parsed_defaulted_and_checked():
    assert rule_options("apg", parse_options(["eta=0", "norm-threshold=5"])) == {
        "eta": 0.0,
        "norm_threshold": 5.0,
        "momentum": 0.0,
    }
    with pytest.raises(UserError, match="has no option 'phi'"):
        rule_options("cfg", {"phi": "1"})
    with pytest.raises(UserError, match=r"must be in \(?\[-1, 1\)"):
        rule_options("apg", {"momentum": "1"})


def test_a_teacher_samples_with_each_guider_and_the_interval_sees_the_timestep(teacher, schedule, labels):
    """The sampling loop gives the rule its timesteps: an interval over the whole path is CFG, a late one is not."""
    draw = lambda rule, **options: generate(teacher, schedule, labels, s=3.0, steps=6, rule=rule, options=options)  # noqa: E731
    cfg = draw("cfg")
    assert torch.allclose(draw("interval", start=0.0, stop=1.0), cfg, atol=1e-6)
    assert not torch.allclose(draw("interval", start=0.5, stop=1.0), cfg, atol=1e-3)
    for name in ("rescale", "cfg-zero-star", "apg"):
        images = draw(name, **rule_options(name))
        assert images.shape == cfg.shape and torch.isfinite(images).all()
    denoiser = guided(teacher, 1.0, "apg")
    x, t = torch.randn(len(labels), 1, 8, 8), torch.full((len(labels),), 500)
    assert torch.allclose(denoiser(x, t, labels), teacher(x, t, labels), atol=1e-6)  # s = 1: one pass, exact


def test_interval_guidance_runs_the_conditional_pass_alone_outside_its_interval(teacher, schedule, labels):
    """Steps outside [start, stop) need cond only: one pass there, two inside, and the same images as the rule."""
    from cfgdistill.evaluation.compare import count_rows

    x, t = torch.randn(len(labels), 1, 8, 8), torch.full((len(labels),), 100)  # progress 0.9: outside [0.2, 0.6)
    pair = RULES["interval"](*predict_pair(teacher, x, t, labels), 3.0, start=0.2, stop=0.6, t=t)
    options = {"start": 0.2, "stop": 0.6}
    assert torch.allclose(guided(teacher, 3.0, "interval", **options)(x, t, labels), pair, atol=1e-6)
    with count_rows(teacher) as counter:
        guided(teacher, 3.0, "interval", **options)(x, t, labels)
    assert counter["rows"] == len(labels)
    with count_rows(teacher) as counter:
        guided(teacher, 3.0, "interval", **options)(x, torch.full_like(t, 600), labels)  # progress 0.4: inside
    assert counter["rows"] == 2 * len(labels)


def test_autoguidance_is_karras_et_al_with_the_guide_models_conditional_pass(teacher, schedule, labels):
    """guide + s·(cond − guide): two passes, the main and the guide model, both conditional; s = 1 is the main."""
    weaker = lambda x, t, cond: 0.5 * teacher(x, t, cond)  # noqa: E731
    x, t = torch.randn(len(labels), 1, 8, 8), torch.full((len(labels),), 500)
    c, w = teacher(x, t, labels), weaker(x, t, labels)
    assert torch.allclose(guided(teacher, 3.0, "autoguidance", guide=weaker)(x, t, labels), w + 3 * (c - w), atol=1e-5)
    assert torch.allclose(guided(teacher, 1.0, "autoguidance", guide=weaker)(x, t, labels), c, atol=1e-6)


@pytest.mark.parametrize("beta", [0.25, 1.0])
def test_autoguidance_with_a_cfg_share_splits_one_weight_between_the_guide_and_cfg(teacher, labels, beta):
    """cond + (s − 1)·[(1 − β)(cond − guide) + β(cond − uncond)]: three passes; β = 1 is CFG, s = 1 the main."""
    weaker = lambda x, t, cond: 0.5 * teacher(x, t, cond)  # noqa: E731
    x, t = torch.randn(len(labels), 1, 8, 8), torch.full((len(labels),), 500)
    c, w, u = teacher(x, t, labels), weaker(x, t, labels), teacher(x, t, teacher.null_condition(labels))
    out = guided(teacher, 3.0, "autoguidance", guide=weaker, cfg_share=beta)(x, t, labels)
    assert torch.allclose(out, c + 2 * ((1 - beta) * (c - w) + beta * (c - u)), atol=1e-5)
    assert not torch.allclose(out, c + 2 * (c - w), atol=1e-3)  # the share is used
    if beta == 1.0:
        assert torch.allclose(out, guided(teacher, 3.0)(x, t, labels), atol=1e-5)
    assert torch.allclose(guided(teacher, 1.0, "autoguidance", guide=weaker, cfg_share=beta)(x, t, labels), c)


QUIET = ["--quiet", "--validate-every", "0", "--batch-size", "16"]


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    """A teacher `t` and a weaker one `weak`, trained for fewer steps."""
    root = tmp_path_factory.mktemp("guiders")
    for name, steps in (("t", "3"), ("weak", "1")):
        assert main(["train", "--out", str(root / name), "--steps", steps, *QUIET]) == 0
    return root


def test_sample_takes_a_guide_model_from_a_folder(teachers, tmp_path):
    """The CLI path: a teacher guided by itself is its conditional model, whatever s."""
    args = ["sample", "--model", str(teachers / "t"), "--n", "4", "--steps", "3", "--quiet"]
    auto = [*args, "-s", "4", "--guider", "autoguidance", "--guide-model", str(teachers / "t")]
    assert main([*auto, "--out", str(tmp_path / "a.png"), "--out-array", str(tmp_path / "a.npy")]) == 0
    assert main([*args, "-s", "1", "--out", str(tmp_path / "c.png"), "--out-array", str(tmp_path / "c.npy")]) == 0
    assert np.allclose(np.load(tmp_path / "a.npy"), np.load(tmp_path / "c.npy"), atol=1e-5)


@pytest.mark.parametrize("name", ["rescale", "interval", "cfg-zero-star", "apg"])
def test_a_distillable_rule_takes_one_scale_per_row(name):
    """A student learns a rule at many scales and timesteps per batch: row i is the rule at s_i and t_i alone."""
    s, t = torch.tensor([1.0, 2.5, 6.0]), torch.tensor([900.0, 500.0, 100.0])
    rule = RULES[name]
    options = dict(phi=0.5, zero_init_steps=0, eta=0.5, norm_threshold=3.0, start=0.3, stop=0.8)
    whole = rule(COND, UNCOND, s, t=t, **options)
    for i in range(3):
        alone = rule(COND[i : i + 1], UNCOND[i : i + 1], float(s[i]), t=t[i : i + 1], **options)
        assert torch.allclose(whole[i : i + 1], alone, atol=1e-6)


def test_rules_of_the_path_are_told_apart_from_rules_of_the_state():
    from cfgdistill.guidance import distillable_rule, on_path

    assert distillable_rule("rescale", {"phi": "0.5"}).keywords == {"phi": 0.5}
    assert distillable_rule("interval", {"start": "0.2"}).keywords == {"start": 0.2, "stop": 1.0}
    assert not on_path(distillable_rule("interval")) and not on_path(distillable_rule("apg"))
    assert on_path(distillable_rule("cfg-zero-star")) and on_path(distillable_rule("apg", {"momentum": "-0.5"}))


def test_a_rescale_student_records_its_rule_and_evaluate_guides_the_teacher_by_it(teachers, tmp_path):
    distill = ["distill", "--teacher", str(teachers / "t"), "--out", str(tmp_path / "s"), "--steps", "2"]
    assert main([*distill, "--guider", "rescale", "--guider-option", "phi=0.5", *QUIET]) == 0
    meta = json.loads((tmp_path / "s" / "cfgdistill.json").read_text())
    assert meta["guidance"]["rule"] == "rescale" and meta["guidance"]["options"] == {"phi": 0.5}
    evaluate = ["evaluate", "--teacher", str(teachers / "t"), "--student", str(tmp_path / "s"), "--n", "20"]
    assert main([*evaluate, "--guidance", "3", "--steps", "3", "--out", str(tmp_path / "e"), "--quiet"]) == 0
    report = json.loads((tmp_path / "e" / "report.json").read_text())
    assert {k: report["guidance_rule"][k] for k in ("rule", "options")} == {"rule": "rescale", "options": {"phi": 0.5}}
    assert "guided by rescale (phi 0.5)" in (tmp_path / "e" / "report.md").read_text()


@pytest.mark.parametrize("share", [0.0, 0.5])
def test_an_autoguidance_student_learns_with_its_guide_and_evaluate_loads_it(teachers, tmp_path, share):
    distill = ["distill", "--teacher", str(teachers / "t"), "--out", str(tmp_path / "s"), "--steps", "2"]
    guide = ["--guide-model", str(teachers / "weak"), "--guider-option", f"cfg_share={share}"]
    rule = ["--guider", "autoguidance", *guide]
    assert main([*distill, *rule, *QUIET]) == 0
    meta = json.loads((tmp_path / "s" / "cfgdistill.json").read_text())["guidance"]
    assert meta["rule"] == "autoguidance" and meta["guide_model"] == str((teachers / "weak").resolve())
    assert meta["options"] == {"cfg_share": share}
    evaluate = ["evaluate", "--teacher", str(teachers / "t"), "--student", str(tmp_path / "s"), "--n", "20"]
    assert main([*evaluate, "--guidance", "3", "--steps", "3", "--out", str(tmp_path / "e"), "--quiet"]) == 0
    assert f"guided by autoguidance (cfg_share {share:g}, guide " in (tmp_path / "e" / "report.md").read_text()
    row = json.loads((tmp_path / "e" / "report.json").read_text())["rows"][0]
    passes = 3 if share else 2  # main (and its unconditional pass with a CFG share) + guide, at each of 3 steps
    assert row["teacher"]["nfe_per_image"] == 3 * passes and row["student"]["nfe_per_image"] == 3
    if share:
        return
    main_model, guide = (cfgdistill_load(teachers / n).model for n in ("t", "weak"))
    x, t, c = torch.randn(4, 1, 8, 8), torch.full((4,), 300), torch.arange(4)
    pair = predict_pair(GuidedPair(main_model, guide), x, t, c)
    assert torch.equal(pair[0], main_model(x, t, c)) and torch.equal(pair[1], guide(x, t, c))
