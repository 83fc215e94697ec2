"""Property-based fuzzing of every command's flags and of every field of a checkpoint's JSON files.

Each case must end in exit 0 with its output written, or a non-zero exit with exactly one line on
stderr: never a traceback, a temporary file, or a change to a file that existed before.
The number of examples is fixed and derandomised; HYPOTHESIS_PROFILE=nightly runs many more.
"""

import hashlib
import json
import os
import random
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from cfgdistill.cli import main
from cfgdistill.config import COMMANDS
from cfgdistill.config.kinds import SWITCH, flag_of

ODD = [
    "0",
    "-1",
    "1",
    "2",
    "nan",
    "inf",
    "-inf",
    "1e400",
    "1e30",
    "",
    ",",
    "3,7",
    "0,1,nan",
    "digits",
    "fashion-mnist",
    "latest",
    "x.png",
    "x.npy",
    "caf\udce9",
    "9" * 25,
    "--",
    "8,8,8,8,8",
    "-s",
]
VALUES = st.one_of(
    st.sampled_from(ODD), st.integers(-(10**20), 10**20).map(str), st.text(max_size=10), st.floats().map(str)
)
REQUIRED = {"out": "out", "model": "{teacher}", "teacher": "{teacher}", "student": "{student}"}
# small defaults that keep an example cheap; a drawn flag given later overrides them
CHEAP = {"evaluate": "--n 20 --guidance 1,2 --steps 2", "sample": "--steps 2", "demo": "--n 20 --sample-steps 2"}
CHEAP["progressive"] = "--start-steps 4 --rounds 2 --steps-per-round 1"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    quiet = ["--quiet", "--validate-every", "0", "--batch-size", "16", "--block-out-channels", "8,16"]
    assert main(["train", "--out", str(root / "teacher"), "--steps", "4", "--checkpoint-every", "2", *quiet]) == 0
    assert (
        main(
            ["distill", "--teacher", str(root / "teacher"), "--out", str(root / "student"), "--steps", "2", *quiet[:-2]]
        )
        == 0
    )
    flux = ["--objective", "flow", "--arch", "flux", "--num-layers", "1", "--num-single-layers", "1"]
    flux += ["--attention-head-dim", "8", "--num-attention-heads", "2"]
    assert main(["train", "--out", str(root / "fluxteacher"), "--steps", "2", *flux, *quiet[:-2]]) == 0
    return root


def snapshot(root: Path) -> dict:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


@contextmanager
def scratch():
    """A fresh working folder per example, so relative paths land there."""
    here = os.getcwd()
    with tempfile.TemporaryDirectory() as folder:
        os.chdir(folder)
        try:
            yield Path(folder)
        finally:
            os.chdir(here)


def run(argv, capsys) -> tuple:
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


def assert_clean_end(code, err, folders):
    assert code == 0 or (len(err.strip().splitlines()) == 1 and "Traceback" not in err), (code, err)
    for folder in folders:
        debris = [p for p in folder.rglob(".*") if any(m in p.name for m in (".tmp-", ".staging-", ".old-", ".lock"))]
        assert not debris, debris


@pytest.fixture
def cheap(monkeypatch):
    """Training and sampling cut to nothing: the fuzz is about what reaches them, not their arithmetic."""
    from cfgdistill.commands import distill, progressive, train
    from cfgdistill.guidance import sampling

    for module in (train, distill, progressive):
        monkeypatch.setattr(module, "fit", lambda model, *args, **kwargs: model.eval())
    monkeypatch.setattr(sampling, "denoise", lambda denoiser, sampler, x_T, *args, **kwargs: x_T.tanh())


def command_argv(command: str, draw) -> list:
    items = [item for cls in COMMANDS[command][1] for item in fields(cls)]
    argv = [command, *CHEAP.get(command, "").split()]
    for name, value in REQUIRED.items():
        if any(item.name == name for item in items):
            argv += [f"--{name}", value]
    for item in draw(st.lists(st.sampled_from(items), max_size=4, unique_by=lambda i: i.name)):
        if item.metadata["kind"] is SWITCH:
            argv.append(flag_of(item) if draw(st.booleans()) else "--no-" + flag_of(item)[2:])
        else:
            argv += [flag_of(item), draw(VALUES)]
    return argv


@pytest.mark.parametrize("command", list(COMMANDS))
@given(data=st.data())
def test_every_flag_of_every_command(command, data, models, cheap, capsys):
    argv = command_argv(command, data.draw)
    before = snapshot(models)
    with scratch() as folder:
        argv = [
            a.replace("{teacher}", str(models / "teacher")).replace("{student}", str(models / "student")) for a in argv
        ]
        code, err = run(argv, capsys)
        assert_clean_end(code, err, [folder, models])
    assert snapshot(models) == before


JSON_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.lists(st.integers(-5, 70), max_size=4),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)
FILES = ["cfgdistill.json", "denoiser/config.json", "scheduler/scheduler_config.json"]
CHECKPOINT_FILES = [("teacher", f) for f in FILES] + [("fluxteacher", f) for f in (*FILES, "transformer/config.json")]


def mutate(data: dict, draw) -> dict:
    """One field (top level or one level down) deleted, replaced by any JSON value, or a new field added."""
    target = data
    keys = sorted(target)
    key = draw(st.sampled_from(keys))
    if isinstance(target[key], dict) and target[key] and draw(st.booleans()):
        target, key = target[key], draw(st.sampled_from(sorted(target[key])))
    action = draw(st.sampled_from(["delete", "replace", "replace", "add"]))
    if action == "delete":
        del target[key]
    elif action == "replace":
        target[key] = draw(JSON_VALUES)
    else:
        target[draw(st.text(min_size=1, max_size=6))] = draw(JSON_VALUES)
    return data


@pytest.mark.parametrize("name, file", CHECKPOINT_FILES)
@given(data=st.data())
def test_every_field_of_a_checkpoint(name, file, data, models, cheap, capsys):
    with scratch() as folder:
        model = shutil.copytree(models / name, folder / "model", ignore=shutil.ignore_patterns("checkpoints"))
        path = model / file
        path.write_text(json.dumps(mutate(json.loads(path.read_text()), data.draw)))
        code, err = run(
            ["sample", "--model", str(model), "--out", str(folder / "x.png"), "--steps", "2", "--quiet"], capsys
        )
        assert_clean_end(code, err, [folder])
        assert code != 0 or (folder / "x.png").stat().st_size > 0


@given(data=st.data())
def test_every_field_of_a_training_state(data, models, capsys):
    random.seed(0)
    torch.manual_seed(0)
    with scratch() as folder:
        run_folder = shutil.copytree(models / "teacher", folder / "run")
        path = run_folder / "checkpoints" / "step-0000004" / "state.json"
        path.write_text(json.dumps(mutate(json.loads(path.read_text()), data.draw)))
        argv = [
            "train",
            "--out",
            str(run_folder),
            "--steps",
            "4",
            "--checkpoint-every",
            "2",
            "--batch-size",
            "16",
            "--block-out-channels",
            "8,16",
            "--validate-every",
            "0",
            "--quiet",
            "--resume",
            "latest",
        ]
        code, err = run(argv, capsys)
        assert_clean_end(code, err, [folder])
