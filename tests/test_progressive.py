"""Few-step students (stage 2 of Meng et al.): grid jumps, their targets, the rounds, and sampling on a grid."""

import json
import shutil

import pytest
import torch

from cfgdistill.cli import main
from cfgdistill.conditioning import ClassConditioning
from cfgdistill.config import LoopConfig
from cfgdistill.evaluation.compare import count_rows
from cfgdistill.objectives.progressive import ProgressiveDistillation
from cfgdistill.processes import VP, RectifiedFlow

PROCESSES = {"vp": lambda: VP.create("v_prediction"), "flow": lambda: RectifiedFlow.create(shift=3.0)}
QUIET = ["--quiet", "--validate-every", "0", "--batch-size", "16"]


def rows_at(t, n: int = 3) -> torch.Tensor:
    return torch.full((n,), t)


@pytest.mark.parametrize("name", PROCESSES)
def test_grid_jumps_are_the_diffusers_samplers_steps(name):
    """Jumping point to point of a grid, then to clean data, is what the grid's diffusers scheduler draws (VP:
    Euler on the probability-flow ODE; its float32 sigma table, up to 2·10⁴ at t = 999, sets the tolerance)."""
    process = PROCESSES[name]()
    grid = process.grid(8)
    net = lambda x, t: torch.tanh(0.7 * x + t.float().view(-1, 1, 1, 1) / 1000)  # noqa: E731
    x_T = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    sampler = process.grid_sampler(grid)
    x = x_T * getattr(sampler, "init_noise_sigma", 1.0)
    scale = getattr(sampler, "scale_model_input", lambda x, t: x)
    for t in sampler.timesteps:
        x = sampler.step(net(scale(x, t), t.expand(3)), t, x).prev_sample
    y, points = x_T, [*grid, process.end]
    for a, b in zip(points[:-1], points[1:]):
        y = process.jump(y, net(y, rows_at(a)), rows_at(a), rows_at(b))
    assert torch.allclose(x, y, atol=2e-3 if name == "vp" else 1e-6)
    assert sampler.timesteps.tolist() == pytest.approx(grid)


@pytest.mark.parametrize("name", PROCESSES)
@pytest.mark.parametrize("to_end", [False, True])
def test_jump_target_is_the_prediction_that_lands_there(name, to_end):
    process = PROCESSES[name]()
    grid = process.grid(8)
    t_a, t_b = rows_at(grid[2]), rows_at(process.end if to_end else grid[5])
    x_a, x_b = torch.randn(2, 3, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    target, weight = process.jump_target(x_a, x_b, t_a, t_b)
    assert torch.allclose(process.jump(x_a, target, t_a, t_b), x_b, atol=1e-5)
    assert weight.shape == (3,) and (weight > 0).all()


class PointMass(torch.nn.Module):
    """The exact model of data that is one image c: every x̂_0 is c, at any t, condition and s."""

    def __init__(self, process, c: torch.Tensor, wrong: float = 0.0):
        super().__init__()
        self.process, self.c, self.wrong = process, c, wrong

    def forward(self, x, t, cond=None, s=None):
        if self.process.name == "flow":
            sigma = self.process.sigma(t).view(-1, 1, 1, 1)
            pred = (x - self.c) / sigma  # v = eps − c with eps = (x − (1 − σ)·c) / σ
        else:
            a, sigma = self.process.alpha_sigma(t)
            pred = a * (x - a * self.c) / sigma - sigma * self.c  # v = a·eps − σ·c
        return pred + self.wrong


@pytest.mark.parametrize("name", PROCESSES)
def test_two_teacher_steps_equal_one_for_the_exact_model_of_a_point_mass(name):
    """For data that is one image, deterministic steps are exact at any size: the target of one student step is
    the teacher's own prediction, so the teacher is a perfect student (loss 0) and a biased one is not."""
    process, c = PROCESSES[name](), torch.full((1, 4, 4), 0.3)
    grid = process.grid(8)
    objective = ProgressiveDistillation(
        PointMass(process, c), process, ClassConditioning(["a", "b"]), LoopConfig(), grid, (1.0, 6.0)
    )
    rows = objective.draw(c.expand(32, -1, -1, -1), torch.zeros(32, dtype=torch.long), torch.Generator().manual_seed(2))
    assert set(rows["t_a"].tolist()) <= set(grid[::2]) and (rows["t_b"] < rows["t_a"]).all()
    assert objective.loss(PointMass(process, c), rows) < 1e-8
    assert objective.loss(PointMass(process, c, wrong=0.1), rows) > 1e-3


@pytest.fixture(scope="module")
def stage_one(tmp_path_factory):
    root = tmp_path_factory.mktemp("fewstep")
    assert main(["train", "--out", str(root / "teacher"), "--steps", "4", *QUIET]) == 0
    distill = ["distill", "--teacher", str(root / "teacher"), "--out", str(root / "student"), "--steps", "2"]
    assert main([*distill, *QUIET]) == 0
    return root


def test_rounds_halve_the_grid_keep_every_student_and_resume_exactly(stage_one, tmp_path, capsys):
    args = ["progressive", "--student", str(stage_one / "student"), "--start-steps", "8", "--rounds", "2"]
    args += ["--steps-per-round", "2", "--checkpoint-every", "1", *QUIET]
    assert main([*args, "--out", str(tmp_path / "p")]) == 0
    meta = {n: json.loads((tmp_path / "p" / "rounds" / f"steps-{n}" / "cfgdistill.json").read_text()) for n in (4, 2)}
    final = json.loads((tmp_path / "p" / "cfgdistill.json").read_text())
    eight = VP.create("v_prediction").grid(8)
    assert meta[4]["sampling"]["grid"] == eight[::2] and final["sampling"]["grid"] == eight[::4]
    assert final["training"]["progressive"]["round"] == 1
    weights = "denoiser/diffusion_pytorch_model.safetensors"
    resumed = tmp_path / "r"
    assert main([*args, "--out", str(resumed)]) == 0
    (resumed / "cfgdistill.json").unlink()  # interrupted in the last round: round 1 is kept, round 2 resumed
    last = resumed / "rounds" / "steps-2"
    for part in ("cfgdistill.json", weights):
        (last / part).unlink()
    shutil.rmtree(last / "checkpoints" / "step-0000002")
    assert main([*args, "--out", str(resumed), "--resume", "latest"]) == 0
    assert (resumed / weights).read_bytes() == (tmp_path / "p" / weights).read_bytes()


def test_sample_uses_the_students_own_grid_one_pass_per_step(stage_one, tmp_path, capsys):
    from cfgdistill import load
    from cfgdistill.guidance.sampling import generate

    args = ["progressive", "--student", str(stage_one / "student"), "--start-steps", "4", "--rounds", "1"]
    assert main([*args, "--steps-per-round", "1", *QUIET, "--out", str(tmp_path / "p")]) == 0
    assert main(["sample", "--model", str(tmp_path / "p"), "-s", "3", "--out", str(tmp_path / "x.png"), "--quiet"]) == 0
    assert "2 steps, 1 pass per step" in capsys.readouterr().out
    student = load(tmp_path / "p")
    labels = torch.arange(4)
    with count_rows(student.model) as counter:
        generate(student.model, student.process, labels, s=3.0, steps=student.meta.sampling["grid"])
    assert counter["rows"] == 2 * len(labels)
    assert main(["sample", "--model", str(tmp_path / "p"), "--steps", "4", "--out", str(tmp_path / "y.png")]) == 0
    assert "its own 2-step grid; sampling 4 steps" in capsys.readouterr().err
    stochastic = ["sample", "--model", str(tmp_path / "p"), "--sampler", "stochastic", "--out", str(tmp_path / "z.png")]
    assert main(stochastic) == 0
    out, err = capsys.readouterr()
    assert "2 steps, 1 pass per step" in out and "own 2-step grid" not in err


def test_evaluate_a_fewstep_student_against_the_teacher_at_its_start_steps(stage_one, tmp_path):
    from cfgdistill import load
    from cfgdistill.evaluation.nfe import fewstep_family

    args = ["progressive", "--student", str(stage_one / "student"), "--start-steps", "8", "--rounds", "2"]
    assert main([*args, "--steps-per-round", "1", *QUIET, "--out", str(tmp_path / "p")]) == 0
    evaluate = ["evaluate", "--teacher", str(stage_one / "teacher"), "--student", str(tmp_path / "p")]
    assert main([*evaluate, "--guidance", "3", "--n", "20", "--out", str(tmp_path / "e"), "--quiet"]) == 0
    report = json.loads((tmp_path / "e" / "report.json").read_text())
    assert report["steps"] == 8 and report["student_steps"] == 2
    assert report["gate"] == {"fd_ratio": 1.25, "accuracy_gap": 0.02}
    curves = report["fd_vs_nfe"]["curves"]
    assert [p["nfe"] for p in curves["CFG teacher"]] == [16, 32, 64, 128]
    assert [p["nfe"] for p in curves["stage-1 student"]] == [8, 16, 32, 64]
    assert [p["nfe"] for p in curves["few-step students"]] == [2, 4]
    assert (tmp_path / "e" / "fd_vs_nfe.png").is_file() and "network evaluations" in (
        tmp_path / "e" / "report.md"
    ).read_text()
    student = load(tmp_path / "p")
    student.meta.training["stage1"] = str(tmp_path / "moved")
    stage1, rounds = fewstep_family(student)
    assert stage1 is None and sorted(rounds) == [2, 4]
