"""The command line end to end with tiny step counts (bad input: test_bad_input.py)."""

import json
import shutil
import subprocess
import sys
from dataclasses import fields

import numpy as np
import pytest

from cfgdistill import RECIPES, DistillConfig, TrainConfig, UserError, configure
from cfgdistill.cli import build_parser, main, parse
from cfgdistill.config import COMMANDS
from cfgdistill.config.commands import TRAINING


def run(capsys, *argv):
    """Run the CLI in-process; return (exit code, stdout, stderr)."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A teacher and a student from 3 training steps each, through the CLI."""
    root = tmp_path_factory.mktemp("cli")
    assert main(["train", "--data", "digits", "--out", str(root / "teacher"), "--steps", "3", "--quiet"]) == 0
    assert (
        main(["distill", "--teacher", str(root / "teacher"), "--out", str(root / "student"), "--steps", "3", "--quiet"])
        == 0
    )
    return root


def test_a_recipe_gives_the_flags_their_defaults_and_a_flag_or_set_still_wins():
    argv = ["train", "--recipe", "fashion", "--out", "x"]
    assert parse(argv)[1][TrainConfig].scale_shift is True
    assert parse(argv + ["--no-scale-shift"])[1][TrainConfig].scale_shift is False
    assert parse(argv + ["--set", "scale_shift=false", "--set", "lr=2e-4"])[1][TrainConfig].lr == 2e-4
    assert parse(["train", "--data", "somefolder", "--out", "x"])[1][TrainConfig].recipe is None  # none measured


def test_a_recipe_gives_the_api_the_values_it_gives_the_flags():
    commands = {TrainConfig: ["train", "--out", "x"], DistillConfig: ["distill", "--teacher", "t", "--out", "x"]}
    for cls, argv in commands.items():
        from_flags = parse([*argv, "--recipe", "fashion"])[1][cls]
        assert from_flags == configure(cls, "fashion")
    assert configure(TrainConfig, "fashion", steps=10).steps == 10 and configure(TrainConfig, "fashion").scale_shift
    with pytest.raises(UserError, match="recipe pipeline has no settings for train"):
        configure(TrainConfig, "pipeline")


def test_each_command_starts_from_the_recipe_measured_for_its_data_or_teacher(tmp_path):
    assert parse(["train", "--out", "x"])[1][TrainConfig].recipe == "digits"
    assert parse(["train", "--data", "fashion-mnist", "--arch", "flux", "--out", "x"])[1][TrainConfig].recipe is None
    flow = parse(["train", "--data", "fashion-mnist", "--objective", "flow", "--out", "x"])[1][TrainConfig]
    assert flow == configure(TrainConfig, "fashion-flow")
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    record = {"training": {"data": "fashion-mnist", "objective": "flow", "arch": "unet"}}
    (teacher / "cfgdistill.json").write_text(json.dumps(record))
    assert parse(["distill", "--teacher", str(teacher), "--out", "x"])[1][DistillConfig].recipe == "fashion-flow"
    (tmp_path / "pipe").mkdir()
    (tmp_path / "pipe" / "model_index.json").write_text("{}")
    pipe = parse(["distill", "--teacher", str(tmp_path / "pipe"), "--out", "x"])[1][DistillConfig]
    assert pipe == configure(DistillConfig, "pipeline")
    (tmp_path / "flux").mkdir()
    (tmp_path / "flux" / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    flux = parse(["distill", "--teacher", str(tmp_path / "flux"), "--out", "x"])[1][DistillConfig]
    assert flux == configure(DistillConfig, "pipeline-flux") and flux.s_one_share == 0.25
    hub = parse(["distill", "--teacher", "someone/uncached-model", "--prompts", "p.txt", "--out", "x"])
    assert hub[1][DistillConfig].recipe == "pipeline"  # not in the cache: distill itself says so
    assert parse(["distill", "--teacher", str(tmp_path / "none"), "--out", "x"])[1][DistillConfig].recipe is None


def test_every_recipe_is_a_valid_config_of_each_command_it_names():
    for name, recipe in RECIPES.items():
        assert recipe.note and recipe.settings
        for command in recipe.settings:
            configure(TRAINING[command], name).validate()


@pytest.mark.parametrize("command", ["train", "distill", "sample", "evaluate", "progressive", "demo"])
def test_the_short_help_shows_at_most_fifteen_flags_and_help_all_shows_every_setting(command, capsys):
    def flags(argv):
        with pytest.raises(SystemExit):
            parse([command, *argv])
        return [line for line in capsys.readouterr().out.splitlines() if line.startswith("  -")]

    short, every = flags(["--help"]), flags(["--help-all"])
    assert len(short) - 1 <= 15  # less argparse's own -h
    settings = {item.name for cls in COMMANDS[command][1] for item in fields(cls)}
    assert len(every) - 2 == len(settings) and len(short) <= len(every)  # less -h and --set


def test_the_library_registries_hold_exactly_the_configs_choices():
    from cfgdistill.config import SAMPLERS
    from cfgdistill.guidance.sampling import STOCHASTIC
    from cfgdistill.processes.vp import SCHEDULERS

    assert (*SCHEDULERS, STOCHASTIC) == SAMPLERS
    subcommands = next(a for a in build_parser()._actions if a.dest == "command").choices
    option = lambda command, flag: next(a for a in subcommands[command]._actions if flag in a.option_strings)  # noqa: E731
    assert tuple(option("sample", "--sampler").choices) == tuple(option("evaluate", "--sampler").choices) == SAMPLERS


def test_a_new_config_field_is_a_flag_with_no_other_edit(monkeypatch):
    """One place per setting: a field added to a config dataclass appears as a typed, validated flag."""
    from dataclasses import dataclass

    from cfgdistill import config
    from cfgdistill.config import kinds

    @dataclass
    class Wider(config.TrainConfig):
        dummy_width: int = kinds.setting(3, "a setting that did not exist", kinds.POSITIVE)

    monkeypatch.setitem(config.COMMANDS, "train", ("train", (Wider, config.RunOptions)))
    command, settings = parse(["train", "--out", "x", "--dummy-width", "7"])
    assert command == "train" and settings[Wider].dummy_width == 7 and settings[Wider].steps == 1200  # digits
    assert parse(["train", "--out", "x", "--set", "dummy_width=5"])[1][Wider].dummy_width == 5
    assert parse(["train", "--out", "x"])[1][Wider].dummy_width == 3
    with pytest.raises(SystemExit):
        parse(["train", "--out", "x", "--dummy-width", "0"])
    sub = lambda full: next(a for a in build_parser(full=full)._actions if a.dest == "command").choices["train"]
    assert "a setting that did not exist" in sub(True).format_help()
    assert "a setting that did not exist" not in sub(False).format_help()  # not a main setting: --help-all only


def test_train_distill_sample_end_to_end(trained, capsys, tmp_path):
    arrays = {}
    for kind in ("teacher", "student"):
        code, out, err = run(
            capsys,
            "sample",
            "--model",
            trained / kind,
            "--out",
            tmp_path / f"{kind}.png",
            "--guidance",
            "3",
            "--steps",
            "3",
            "--labels",
            "0,1,2",
            "--n",
            "6",
            "--seed",
            "4",
            "--out-array",
            tmp_path / f"{kind}.npy",
            "--quiet",
        )
        assert code == 0, err
        assert kind in out and (tmp_path / f"{kind}.png").stat().st_size > 0
        arrays[kind] = np.load(tmp_path / f"{kind}.npy")
        assert arrays[kind].dtype == np.float32 and arrays[kind].shape == (6, 1, 8, 8)
        assert np.abs(arrays[kind]).max() <= 1
    assert (
        "2 passes"
        in run(
            capsys, "sample", "--model", trained / "teacher", "--out", tmp_path / "x.png", "--steps", "1", "--quiet"
        )[1]
    )


def test_student_extrapolation_warns_then_runs(trained, capsys, tmp_path):
    code, out, err = run(
        capsys,
        "sample",
        "--model",
        trained / "student",
        "--out",
        tmp_path / "x.png",
        "--guidance",
        "9",
        "--steps",
        "1",
        "--quiet",
    )
    assert code == 0
    assert "warning" in err and "extrapolated" in err


def test_installed_command_prints_no_traceback(tmp_path):
    exe = shutil.which("cfgdistill") or sys.executable
    argv = [exe] if exe != sys.executable else [exe, "-m", "cfgdistill.cli"]
    (tmp_path / "model").mkdir()
    model, out = str(tmp_path / "model"), str(tmp_path / "x.png")
    done = subprocess.run(argv + ["sample", "--model", model, "--out", out], capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"cfgdistill: error: {model} is not a cfgdistill checkpoint (no cfgdistill.json)"
    ]


def test_demo_smoke(capsys, tmp_path):
    code, out, err = run(
        capsys,
        "demo",
        "--out",
        tmp_path / "demo",
        "--train-steps",
        "2",
        "--distill-steps",
        "2",
        "--sample-steps",
        "2",
        "--n",
        "20",
        "--quiet",
    )
    assert code == 0, err
    demo = tmp_path / "demo"
    for name in (
        "teacher/cfgdistill.json",
        "student/cfgdistill.json",
        "teacher_vs_student.png",
        "student_s4.png",
        "teacher_s4.png",
    ):
        assert (demo / name).is_file(), name
    summary = json.loads((demo / "summary.json").read_text())
    assert [row["s"] for row in summary["per_s"]] == [0.0, 1.0, 2.0, 4.0]
    guided = summary["per_s"][-1]
    assert guided["teacher_nfe_per_image"] == 4 and guided["student_nfe_per_image"] == 2
    assert guided["throughput_ratio"] > 0 and guided["paired_relative_error"] >= 0


def test_evaluate_command(trained, capsys, tmp_path):
    code, out, err = run(
        capsys,
        "evaluate",
        "--teacher",
        trained / "teacher",
        "--student",
        trained / "student",
        "--guidance",
        "1,3",
        "--steps",
        "2",
        "--n",
        "20",
        "--out",
        tmp_path / "eval",
        "--quiet",
    )
    assert code == 0, err
    assert "| 3 |" in out or "| 3 " in out
    assert (tmp_path / "eval" / "fd_vs_s.png").is_file() and (tmp_path / "eval" / "report.json").is_file()
