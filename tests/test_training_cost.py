"""Training cost: `--mixed-precision auto` (what it chooses, records and keeps on resume), the new inputs' own
learning rate, and `--stop-when-matched`."""

import json

import pytest
import torch

from cfgdistill import DistillConfig, RunOptions, TrainConfig, distill, load, train_teacher
from cfgdistill.data import load_dataset
from cfgdistill.training import precision
from cfgdistill.training.loop import param_groups

TINY = dict(steps=4, batch_size=16, block_out_channels=[8, 16], data="digits")


@pytest.fixture(scope="module")
def data():
    return load_dataset("digits", "train")


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CFGDISTILL_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.parametrize("seconds, expected", [({"no": 2.0, "bf16": 1.0}, "bf16"), ({"no": 1.0, "bf16": 2.0}, "no")])
def test_auto_takes_the_faster_precision_and_records_it(seconds, expected, data, fresh_cache, monkeypatch, capsys):
    monkeypatch.setattr(precision, "time_steps", lambda *args: seconds)
    config = TrainConfig(**TINY, mixed_precision="auto")
    teacher = train_teacher(config, RunOptions(validate_every=0), data)
    assert teacher.meta.training["mixed_precision"] == expected
    assert f"mixed precision auto: {'fp32' if expected == 'no' else 'bf16'}" in capsys.readouterr().err
    cached = json.loads((fresh_cache / "precision.json").read_text())
    assert [entry["choice"] for entry in cached.values()] == [expected]
    monkeypatch.setattr(precision, "time_steps", lambda *args: pytest.fail("timed again"))
    again = TrainConfig(**TINY, mixed_precision="auto")
    again = train_teacher(again, RunOptions(quiet=True), data)  # the same recipe on the same machine: from the cache
    assert again.meta.training["mixed_precision"] == expected


def test_the_probe_leaves_a_distillation_exactly_as_the_precision_it_chose(data, fresh_cache, tmp_path):
    """The probe draws rows (and starts teacher paths); a probed run must still equal a run told its precision."""
    teacher = train_teacher(TrainConfig(**TINY, mixed_precision="no"), RunOptions(quiet=True), data)
    recipe = dict(steps=3, batch_size=16, trajectory_fraction=0.5, trajectory_steps=4)
    auto = DistillConfig(**recipe, mixed_precision="auto")
    probed = distill(teacher, auto, RunOptions(quiet=True), data)
    chosen = probed.meta.training["distill"]["mixed_precision"]
    assert (fresh_cache / "precision.json").is_file() and chosen in ("no", "bf16")
    told = distill(teacher, DistillConfig(**recipe, mixed_precision=chosen), RunOptions(quiet=True), data)
    for a, b in zip(probed.model.state_dict().values(), told.model.state_dict().values()):
        assert torch.equal(a, b)


def test_a_resume_keeps_the_recorded_precision(data, fresh_cache, tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "time_steps", lambda *args: pytest.fail("a resume does not time"))
    run = dict(validate_every=0, quiet=True, checkpoint_every=2)
    straight = train_teacher(TrainConfig(**TINY, mixed_precision="bf16"), RunOptions(out=tmp_path / "a", **run), data)
    (tmp_path / "a" / "cfgdistill.json").unlink()
    resume = RunOptions(out=tmp_path / "a", resume=str(tmp_path / "a/checkpoints/step-0000002"), **run)
    train_teacher(TrainConfig(**TINY, mixed_precision="auto"), resume, data)
    resumed = load(tmp_path / "a")
    assert resumed.meta.training["mixed_precision"] == "bf16"
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)


def test_the_students_new_inputs_learn_at_their_own_rate():
    from conftest import tiny_denoiser

    student = tiny_denoiser().with_guidance((1.0, 6.0), negatives=True)
    groups = param_groups(student, 1e-3, 10.0)
    assert [g["lr"] for g in groups] == [1e-3, 1e-2]
    new = {id(p) for p in groups[1]["params"]}
    names = {name for name, p in student.named_parameters() if id(p) in new}
    assert names and all(name.startswith(("guidance_in.", "negative_in.")) for name in names)
    assert len(groups[0]["params"]) + len(new) == len(list(student.parameters()))
    assert [id(p) for p in param_groups(student, 1e-3, 1.0)[0]["params"]] == [id(p) for p in student.parameters()]


class StopAt:
    """A stand-in for the gate check that says "stop" from a given step on, and notes how it was asked."""

    def __init__(self, step: int):
        self.step, self.asked, self.history = step, [], []

    def __call__(self, model, step: int) -> bool:
        self.asked.append((step, model.training))
        return step >= self.step


def test_the_loop_stops_when_asked_and_the_gate_check_passes_a_student_equal_to_its_teacher(data, monkeypatch):
    from cfgdistill.evaluation.gate_check import GateCheck
    from cfgdistill.pipelines import distill as pipeline

    teacher = train_teacher(TrainConfig(**TINY, mixed_precision="no"), RunOptions(quiet=True), data)
    until = StopAt(4)
    monkeypatch.setattr(pipeline, "gate_check", lambda *args: until)
    config = DistillConfig(steps=10, batch_size=16, stop_when_matched=2, mixed_precision="no")
    student = distill(teacher, config, RunOptions(quiet=True), data)
    assert until.asked == [(2, False), (4, False)]  # every 2 steps, in eval mode (EMA weights), until it says stop
    assert student.meta.training["gate_checks"] == []
    check = GateCheck(teacher, (1.0, 1.0), {"rule": "cfg", "options": {}}, n=20, steps=2)
    same = teacher.model.with_guidance((1.0, 1.0))  # zero-initialised: the teacher's conditional model
    assert check(same, 7) and check.history == [{"step": 7, "passed": {"1": True}}]
