"""Rules of the sampling path (APG's momentum, CFG-Zero*'s zero first steps), learnt on the teacher's own paths:
each row's target is what the teacher's guided sampler computes at that state, memory and step included."""

import torch
from conftest import tiny_denoiser

from cfgdistill.conditioning import ClassConditioning
from cfgdistill.config import DistillConfig
from cfgdistill.guidance import distillable_rule, guided
from cfgdistill.objectives import GuidanceDistillation
from cfgdistill.processes import VP

STEPS = 5


def path_objective(teacher, rule):
    config = DistillConfig(trajectory_fraction=1.0, trajectory_steps=STEPS, p_uncond=0.0).validate()
    conditioning = ClassConditioning([str(i) for i in range(10)])
    return GuidanceDistillation(teacher, VP.create("epsilon"), conditioning, config, rule)


def test_a_path_rules_targets_are_the_teachers_guided_sampler_step_by_step():
    """Four paths from step 0 (no staggering): at every step the rows' targets equal `guided` run along the same
    path with the same s, whose memory (APG's running sum) lives in the sampling closure."""
    teacher = tiny_denoiser()
    g = torch.Generator().manual_seed(0)
    for name, options in (("apg", {"momentum": "-0.5", "eta": "0"}), ("cfg-zero-star", {"zero_init_steps": "2"})):
        objective = path_objective(teacher, distillable_rule(name, options))
        paths = objective.trajectories
        paths.state = paths.fresh(4, (1, 8, 8), g)
        x, cond, s = paths.state["x_t"].clone(), paths.state["cond"].clone(), paths.state["s"].clone()
        closures = [guided(teacher, float(s[i]), name, **distillable_rule(name, options).keywords) for i in range(4)]
        for step in range(STEPS):
            t = paths.timesteps[step]
            rows = objective.draw(torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.long), g)
            assert (rows["t"] == t).all()
            expected = torch.cat([closures[i](x[i : i + 1], t.expand(1), cond[i : i + 1]) for i in range(4)])
            assert torch.allclose(rows["target"], expected, rtol=1e-4, atol=1e-5), (name, step)
            if name == "cfg-zero-star":
                assert (rows["target"] == 0).all() == (step < 2)
            x = paths.path.step(expected, x, torch.full((4,), step), torch.ones(4, dtype=torch.bool))
            if step < STEPS - 1:  # after the last step the paths start again from noise
                # eps paths reach |x| ~ 6e4 here: batched and per-row steps round apart by float32 eps at that scale
                assert torch.allclose(paths.state["x_t"], x, rtol=1e-4, atol=1e-6 * float(x.abs().max()))


def test_the_loss_trains_on_the_paths_own_targets():
    teacher = tiny_denoiser()
    objective = path_objective(teacher, distillable_rule("apg", {"momentum": "-0.5"}))
    g = torch.Generator().manual_seed(1)
    rows = objective.draw(torch.zeros(6, 1, 8, 8), torch.zeros(6, dtype=torch.long), g)
    student = teacher.with_guidance((1.0, 6.0))
    with torch.no_grad():
        direct = ((student(rows["x_t"], rows["t"], rows["cond"], rows["s"]) - rows["target"]) ** 2).mean()
    assert torch.allclose(objective.loss(student, rows), direct, atol=1e-6)


def test_a_path_rule_student_records_its_rule_and_resumes_exactly(tmp_path):
    """The paths' memory is saved with each checkpoint, so a resumed run ends where a straight one does."""
    from cfgdistill import DistillConfig, RunOptions, TrainConfig, distill, train_teacher
    from cfgdistill.data import load_dataset

    data = load_dataset("digits", "train")
    tiny = dict(batch_size=8, mixed_precision="no")
    teacher = train_teacher(TrainConfig(steps=2, block_out_channels=[8, 16], **tiny), RunOptions(quiet=True), data)
    config = dict(steps=4, guider="apg", guider_option=["momentum=-0.5"], trajectory_fraction=1.0, **tiny)
    run = dict(quiet=True, validate_every=0, checkpoint_every=2)
    straight = distill(
        teacher, DistillConfig(**config, trajectory_steps=3), RunOptions(out=tmp_path / "a", **run), data
    )
    assert straight.meta.guidance.options["momentum"] == -0.5
    (tmp_path / "a" / "cfgdistill.json").unlink()
    resume = RunOptions(out=tmp_path / "a", resume=str(tmp_path / "a/checkpoints/step-0000002"), **run)
    resumed = distill(teacher, DistillConfig(**config, trajectory_steps=3), resume, data)
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
