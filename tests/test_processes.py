"""Training as real processes: SIGTERM, kill -9 in the middle of a checkpoint write, and two processes in one
gloo group."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cfgdistill.cli import main
from cfgdistill.training import state as training_state

ARGS = ["--steps", "40", "--batch-size", "16", "--checkpoint-every", "2", "--validate-every", "0", "--quiet", "--cpu"]
WEIGHTS = "denoiser/diffusion_pytorch_model.safetensors"

# Wraps the safetensors writer: the second checkpoint write stops half-way and waits to be killed.
HALF_WRITE = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from cfgdistill.training import state as training_state
    from cfgdistill.cli import main

    real, calls = training_state.save_file, []

    def half_then_hang(tensors, path):
        calls.append(path)
        real(tensors, path)
        if len(calls) == 2:
            data = Path(path).read_bytes()
            Path(path).write_bytes(data[: len(data) // 2])
            Path(sys.argv[1]).write_text(str(path))
            time.sleep(600)

    training_state.save_file = half_then_hang
    sys.exit(main(sys.argv[2:]))
""")


def cli(*argv, **kwargs):
    return subprocess.Popen(
        [sys.executable, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs
    )


def wait_for(path: Path, process, timeout=120):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def weights(run: Path) -> dict:
    return load_file(run / WEIGHTS)


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run that every interrupted one must reproduce bit for bit."""
    out = tmp_path_factory.mktemp("reference") / "run"
    assert main(["train", "--out", str(out), *ARGS]) == 0
    return weights(out)


def test_sigterm_saves_a_checkpoint_and_resume_finishes_identically(reference, tmp_path):
    out = tmp_path / "run"
    process = cli("-m", "cfgdistill", "train", "--out", str(out), *ARGS)
    wait_for(out / "checkpoints" / "step-0000004" / "COMPLETE", process)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, err
    last = err.strip().splitlines()[-1]
    assert "interrupted by SIGTERM at step" in last and "continue with --resume latest" in last
    step = int(last.split(" at step ")[1].split(";")[0])
    assert step < 40 and (out / "checkpoints" / f"step-{step:07d}" / "COMPLETE").is_file()
    assert main(["train", "--out", str(out), *ARGS, "--resume", "latest"]) == 0
    assert same(weights(out), reference)


def test_kill_9_while_writing_a_checkpoint_loses_only_that_checkpoint(reference, tmp_path, capsys):
    out, hung = tmp_path / "run", tmp_path / "hung"
    process = cli("-c", HALF_WRITE, str(hung), "train", "--out", str(out), *ARGS)
    wait_for(hung, process)
    process.kill()  # SIGKILL: no handler, no clean-up
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL
    complete, incomplete = training_state.scan(out)
    assert [p.name for p in complete] == ["step-0000002"]
    assert [p.name for p in incomplete] == [f".step-0000004.tmp-{process.pid}"]
    assert main(["train", "--out", str(out), *ARGS, "--resume", "latest"]) == 0
    err = capsys.readouterr().err
    assert f"skipping incomplete checkpoint {incomplete[0]}" in err and "resumed from" in err and "at step 2" in err
    assert same(weights(out), reference)


def test_two_processes_form_one_gloo_group_and_match_one_process(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # fp32 given: auto keeps fp32 with several CPU processes, and might time bf16 faster for one
    common = "--steps 8 --checkpoint-every 8 --validate-every 0 --log-every 1 --quiet --cpu --mixed-precision no"
    common = common.split()
    two = cli(
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "cfgdistill",
        "train",
        "--out",
        str(tmp_path / "two"),
        "--batch-size",
        "16",
        *common,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    _, err = two.communicate(timeout=300)
    assert two.returncode == 0, err
    assert "2 processes in one gloo group; global batch 32" in err
    _, meta = training_state.load_state(tmp_path / "two" / "checkpoints" / "step-0000008")
    assert meta["recipe"]["processes"] == 2
    for name, batch in (("one", "32"), ("alone", "16")):  # "alone": what each process would compute on its own
        assert main(["train", "--out", str(tmp_path / name), "--batch-size", batch, *common]) == 0

    def loss_curve(name):
        return [e.value for e in EventAccumulator(str(tmp_path / name / "logs" / "teacher")).Reload().Scalars("loss")]

    def gap(a, b):
        wa, wb = weights(tmp_path / a), weights(tmp_path / b)
        return max((wa[k] - wb[k]).abs().max().item() for k in wa)

    curve_two, curve_one = loss_curve("two"), loss_curve("one")
    assert len(curve_two) == len(curve_one) == 8
    assert max(abs(a - b) for a, b in zip(curve_two, curve_one)) < 1e-4
    assert gap("two", "one") < 1e-4 < gap("alone", "one")
