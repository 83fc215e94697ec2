"""The shared training loop: bitwise resume after a signal, NaN guard, checkpoint rotation, logs, accumulation.

Every run here is on the CPU (`cpu=True`), where it is deterministic; on a GPU a resume agrees to about 1e-5.
"""

import json
import os
import shutil
import signal

import pytest
import torch
from conftest import tiny_denoiser

from cfgdistill.checkpoint import Checkpoint
from cfgdistill.commands.distill import distill
from cfgdistill.commands.train import train_teacher
from cfgdistill.config import DistillConfig, RunOptions, TrainConfig
from cfgdistill.data import load_dataset
from cfgdistill.errors import UserError
from cfgdistill.objectives.guidance_distillation import GUIDANCE_WEIGHTING
from cfgdistill.processes import VP
from cfgdistill.training import loop
from cfgdistill.training import state as training_state
from cfgdistill.training.state import Interrupted

TINY = dict(steps=6, batch_size=16, warmup_steps=2, ema_decay=0.9)


@pytest.fixture(scope="module")
def data():
    return load_dataset("digits", "train")


def teacher_run(data, out, **run):
    config = TrainConfig(block_out_channels=[8, 16], **TINY)
    return train_teacher(config, RunOptions(out=out, validate_every=0, quiet=True, cpu=True, **run), data).model


def student_run(data, out, paths: dict | None = None, **run):
    teacher = Checkpoint.create(tiny_denoiser(), VP.create("v_prediction"), kind="teacher", dataset=data, training={})
    config = DistillConfig(**TINY, **(paths or {}))
    return distill(teacher, config, RunOptions(out=out, validate_every=0, quiet=True, cpu=True, **run), data).model


def paths_student_run(data, out, **run):
    """Distillation with half of each batch on the teacher's guided paths: their state must survive the resume too."""
    return student_run(data, out, paths={"trajectory_fraction": 0.5, "trajectory_steps": 4}, **run)


def hook_step(monkeypatch, step, action):
    """Run `action(x_0)` when the loop fetches batch `step`; its return value replaces the images."""
    real = loop.global_batch

    def hooked(data, size, seed, k):
        x_0, labels = real(data, size, seed, k)
        return (action(x_0), labels) if k == step else (x_0, labels)

    monkeypatch.setattr(loop, "global_batch", hooked)


def same_weights(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize(
    "run_fn", [teacher_run, student_run, paths_student_run], ids=["teacher", "distillation", "distillation-paths"]
)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_saves_and_resume_latest_is_bitwise_identical(run_fn, signum, data, tmp_path, monkeypatch):
    uninterrupted = run_fn(data, tmp_path / "a", checkpoint_every=2)
    handler = signal.getsignal(signal.SIGINT)  # the default, or SIG_IGN under nohup and background jobs

    def send(x_0):
        os.kill(os.getpid(), signum)
        return x_0

    hook_step(monkeypatch, 3, send)
    with pytest.raises(Interrupted) as stop:
        run_fn(data, tmp_path / "b", checkpoint_every=2)
    monkeypatch.undo()
    assert stop.value.step == 3 and stop.value.path.name == "step-0000003" and stop.value.signum == signum
    assert signal.getsignal(signal.SIGINT) is handler  # handlers are put back
    resumed = run_fn(data, tmp_path / "b", checkpoint_every=2, resume="latest")
    assert same_weights(resumed, uninterrupted)


def test_a_non_finite_loss_names_the_step_and_keeps_the_last_checkpoint(data, tmp_path, monkeypatch):
    hook_step(monkeypatch, 3, lambda x_0: x_0 * float("nan"))
    with pytest.raises(
        UserError,
        match=r"not finite at step 3; stopped before the update; "
        r"the last complete checkpoint, .*step-0000002, is intact",
    ):
        teacher_run(data, tmp_path, checkpoint_every=2)
    complete, incomplete = training_state.scan(tmp_path)
    assert [p.name for p in complete] == ["step-0000002"] and not incomplete
    tensors, meta = training_state.load_state(complete[0])
    assert meta["step"] == 2 and all(torch.isfinite(v).all() for k, v in tensors.items() if v.is_floating_point())


def test_only_the_newest_checkpoints_are_kept(data, tmp_path):
    teacher_run(data, tmp_path, checkpoint_every=1, checkpoints_total_limit=2)
    assert [p.name for p in training_state.scan(tmp_path)[0]] == ["step-0000005", "step-0000006"]


def test_overwrite_clears_the_old_run_only_once_the_new_one_starts(data, tmp_path):
    teacher_run(data, tmp_path, checkpoint_every=1, log_every=1)
    old_logs = {p for p in (tmp_path / "logs").rglob("*") if p.is_file()}
    before = sorted(p.name for p in training_state.scan(tmp_path)[0])
    with pytest.raises(UserError, match="exceeds the"):  # refused before anything is touched
        train_teacher(
            TrainConfig(block_out_channels=[8, 16], **{**TINY, "batch_size": 5000}),
            RunOptions(out=tmp_path, quiet=True, cpu=True, overwrite=True),
            data,
        )
    assert sorted(p.name for p in training_state.scan(tmp_path)[0]) == before and len(before) == 6
    teacher_run(data, tmp_path, checkpoint_every=4, overwrite=True)
    assert [p.name for p in training_state.scan(tmp_path)[0]] == ["step-0000004"]
    assert old_logs and not any(p.exists() for p in old_logs)


def test_resume_latest_skips_an_incomplete_checkpoint_and_says_so(data, tmp_path, capsys):
    reference = teacher_run(data, tmp_path / "a", checkpoint_every=2)
    teacher_run(data, tmp_path / "b", checkpoint_every=2)
    root = training_state.checkpoint_root(tmp_path / "b")
    shutil.rmtree(root / "step-0000006")
    (root / "step-0000004" / "COMPLETE").unlink()  # as if the copy of this one was cut short
    resumed = teacher_run(data, tmp_path / "b", checkpoint_every=2, resume="latest")
    err = capsys.readouterr().err
    assert "skipping incomplete checkpoint" in err and "step-0000004" in err
    assert "resumed from" in err and "step-0000002 at step 2" in err
    assert same_weights(resumed, reference)


def test_a_guidance_loss_run_under_another_weighting_is_not_resumed(data, tmp_path):
    student_run(data, tmp_path, paths={"loss_space": "guidance"}, checkpoint_every=3)
    state = training_state.scan(tmp_path)[0][-1] / training_state.META
    meta = json.loads(state.read_text())
    assert meta["recipe"]["guidance_weighting"] == GUIDANCE_WEIGHTING
    del meta["recipe"]["guidance_weighting"]  # as written before the weighting was named
    state.write_text(json.dumps(meta))
    with pytest.raises(UserError, match="guidance_weighting = <absent>"):
        student_run(data, tmp_path, paths={"loss_space": "guidance"}, resume="latest")


def test_a_setting_added_after_a_checkpoint_resumes_at_its_default_and_refuses_another_value(data, tmp_path):
    reference = student_run(data, tmp_path / "a")
    student_run(data, tmp_path / "b", checkpoint_every=3)
    state = training_state.scan(tmp_path / "b")[0][-1] / training_state.META
    meta = json.loads(state.read_text())
    del meta["recipe"]["s_one_share"], meta["recipe"]["recipe"]  # as written before these settings existed
    meta["recipe"] |= {"s_draws": 1, "guidance_gate": "none"}  # and with retired ones, at their values when off
    state.write_text(json.dumps(meta))
    with pytest.raises(UserError, match="s_one_share = 0.0, this run has 0.5"):
        student_run(data, tmp_path / "b", paths={"s_one_share": 0.5}, resume="latest")
    assert same_weights(student_run(data, tmp_path / "b", resume="latest"), reference)


def test_a_checkpoint_written_with_a_retired_setting_on_is_refused_in_one_line(data, tmp_path):
    student_run(data, tmp_path, checkpoint_every=3)
    state = training_state.scan(tmp_path)[0][-1] / training_state.META
    meta = json.loads(state.read_text())
    meta["recipe"]["s_draws"] = 4
    state.write_text(json.dumps(meta))
    with pytest.raises(UserError, match="written with s_draws, a setting cfgdistill no longer has"):
        student_run(data, tmp_path, resume="latest")


def test_tensorboard_gets_scalars_and_preview_grids(data, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = TrainConfig(block_out_channels=[8, 16], **TINY)
    train_teacher(
        config, RunOptions(out=tmp_path, log_every=1, validate_every=3, checkpoint_every=0, quiet=True, cpu=True), data
    )
    events = EventAccumulator(str(tmp_path / "logs" / "teacher"), size_guidance={"images": 0}).Reload()
    assert {"loss", "lr", "samples_per_s"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("loss")] == list(range(1, 7))
    assert [e.step for e in events.Images("preview")] == [3, 6]


def test_gradient_accumulation_matches_one_large_batch(data, tmp_path):
    base = dict(block_out_channels=[8, 16], steps=3, warmup_steps=1, ema_decay=0.0)
    large = train_teacher(TrainConfig(batch_size=32, **base), RunOptions(quiet=True, cpu=True), data).model
    accumulated = train_teacher(
        TrainConfig(batch_size=16, gradient_accumulation_steps=2, **base), RunOptions(quiet=True, cpu=True), data
    ).model
    small = train_teacher(TrainConfig(batch_size=16, **base), RunOptions(quiet=True, cpu=True), data).model
    gap = lambda a, b: max((x - y).abs().max().item() for x, y in zip(a.parameters(), b.parameters()))
    assert gap(large, accumulated) < 1e-5 < gap(large, small)


def test_bf16_mixed_precision_trains(data):
    config = TrainConfig(block_out_channels=[8, 16], mixed_precision="bf16", **TINY)
    model = train_teacher(config, RunOptions(quiet=True, cpu=True), data).model
    assert all(torch.isfinite(p).all() and p.dtype == torch.float32 for p in model.parameters())


def test_world_size_without_a_process_group_is_refused(data, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(UserError, match=r"WORLD_SIZE is 2 but the process group has 1 process"):
        teacher_run(data, None)
