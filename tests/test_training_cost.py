"""Training cost: `--mixed-precision auto` (what it chooses, records and keeps on resume)."""

import json

import pytest
import torch

from cfgdistill import DistillConfig, RunOptions, TrainConfig, distill, load, train_teacher
from cfgdistill.data import load_dataset
from cfgdistill.training import precision

TINY = dict(steps=4, batch_size=16, block_out_channels=[8, 16], data="digits")


@pytest.fixture(scope="module")
def data():
    return load_dataset("digits", "train")


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CFGDISTILL_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


CHOICES = [
    ({"no": 2.0, "bf16": 1.0}, "bf16"),
    ({"no": 1.0, "bf16": 2.0}, "no"),
    ({"no": 1.05, "bf16": 1.0}, "no"),  # faster, but within the margin: fp32 keeps its precision
    ({"no": 1.1, "bf16": 1.0}, "bf16"),
]


@pytest.mark.parametrize("seconds, expected", CHOICES)
def test_auto_takes_bf16_only_with_the_margin_and_records_it(seconds, expected, data, fresh_cache, monkeypatch, capsys):
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
