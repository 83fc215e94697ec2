"""The command line end to end with tiny step counts (bad input: test_bad_input.py)."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from cfgdistill.cli import build_parser, main


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


def test_fashion_preset_scales_and_shifts_unless_told_not_to():
    argv = ["train", "--preset", "fashion-cpu", "--out", "x"]
    assert build_parser("fashion-cpu").parse_args(argv).scale_shift is True
    assert build_parser("fashion-cpu").parse_args(argv + ["--no-scale-shift"]).scale_shift is False
    assert build_parser().parse_args(["train", "--out", "x"]).scale_shift is False


def test_a_preset_gives_the_api_the_values_it_gives_the_flags():
    from dataclasses import fields

    from cfgdistill import DistillConfig, TrainConfig
    from cfgdistill.cli import parse

    commands = {TrainConfig: ["train", "--out", "x"], DistillConfig: ["distill", "--teacher", "t", "--out", "x"]}
    for cls, argv in commands.items():
        from_flags = parse([*argv, "--preset", "fashion-cpu"])[1][cls]
        assert all(getattr(from_flags, f.name) == getattr(cls.preset("fashion-cpu"), f.name) for f in fields(cls))
    assert TrainConfig.preset("fashion-cpu", steps=10).steps == 10 and TrainConfig.preset("fashion-cpu").scale_shift


def test_fashion_preset_weights_the_distillation_loss_by_t():
    argv = ["distill", "--preset", "fashion-cpu", "--teacher", "t", "--out", "x"]
    assert build_parser("fashion-cpu").parse_args(argv).loss_space == "guidance"
    assert build_parser("fashion-cpu").parse_args(argv + ["--loss-space", "prediction"]).loss_space == "prediction"
    assert build_parser().parse_args(["distill", "--teacher", "t", "--out", "x"]).loss_space == "prediction"


def test_the_library_registries_hold_exactly_the_configs_choices():
    from cfgdistill.config import SAMPLERS
    from cfgdistill.pipelines.sample import STOCHASTIC
    from cfgdistill.processes.vp import SCHEDULERS

    assert (*SCHEDULERS, STOCHASTIC) == SAMPLERS
    subcommands = next(a for a in build_parser()._actions if a.dest == "command").choices
    option = lambda command, flag: next(a for a in subcommands[command]._actions if flag in a.option_strings)  # noqa: E731
    assert tuple(option("sample", "--sampler").choices) == tuple(option("evaluate", "--sampler").choices) == SAMPLERS


def test_a_new_config_field_is_a_flag_with_no_other_edit(monkeypatch):
    """One place per setting: a field added to a config dataclass appears as a typed, validated flag."""
    from dataclasses import dataclass

    from cfgdistill import config, settings
    from cfgdistill.cli import parse

    @dataclass
    class Wider(config.TrainConfig):
        dummy_width: int = settings.setting(3, "a setting that did not exist", settings.POSITIVE)

    monkeypatch.setitem(config.COMMANDS, "train", ("train", (Wider, config.RunOptions)))
    command, settings = parse(["train", "--out", "x", "--dummy-width", "7"])
    assert command == "train" and settings[Wider].dummy_width == 7 and settings[Wider].steps == 2000
    assert parse(["train", "--out", "x"])[1][Wider].dummy_width == 3
    with pytest.raises(SystemExit):
        parse(["train", "--out", "x", "--dummy-width", "0"])
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices["train"]
    assert "a setting that did not exist" in sub.format_help()


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
    done = subprocess.run(
        argv + ["sample", "--model", str(tmp_path), "--out", str(tmp_path / "x.png")], capture_output=True, text=True
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"cfgdistill: error: {tmp_path} is not a cfgdistill checkpoint (no cfgdistill.json)"
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
