"""Nothing a user brings is written to: every command, with its output at, inside or around each input it reads,
is refused in one line and leaves every input byte-identical."""

import hashlib
from pathlib import Path

import pytest
from PIL import Image
from tiny_pipelines import sd_pipeline

from cfgdistill.cli import main

QUIET = ["--quiet", "--validate-every", "0"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs") / "brought"
    for label in "ab":
        (root / "images" / label).mkdir(parents=True)
        for i in range(5):
            Image.new("L", (8, 8), 40 * i).save(root / "images" / label / f"{i}.png")
    small = ["--steps", "2", "--batch-size", "8", "--block-out-channels", "8,16", *QUIET]
    assert main(["train", "--out", str(root / "teacher"), *small]) == 0
    assert (
        main(["distill", "--teacher", str(root / "teacher"), "--out", str(root / "student"), *small[:4], *QUIET]) == 0
    )
    sd_pipeline().save_pretrained(root / "pipe")
    (root / "prompts.txt").write_text("a coat\na shoe\n")
    return root


# command -> (its arguments with {name} for each input, the inputs, how its output is given)
COMMANDS = {
    "train": ("train --data {images} --steps 1", ["images"], "--out"),
    "distill": ("distill --teacher {teacher} --steps 1", ["teacher"], "--out"),
    "distill a pipeline": (
        "distill --teacher {pipe} --prompts {prompts.txt} --steps 1",
        ["pipe", "prompts.txt"],
        "--out",
    ),
    "sample": ("sample --model {student} --n 1 --steps 1", ["student"], "--out"),
    "sample an array": ("sample --model {student} --n 1 --steps 1 --out {tmp}/x.png", ["student"], "--out-array"),
    "evaluate": ("evaluate --teacher {teacher} --student {student} --n 2 --steps 1", ["teacher", "student"], "--out"),
    "progressive": ("progressive --student {student} --rounds 1 --steps-per-round 1", ["student"], "--out"),
}


def snapshot(root: Path) -> dict:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


def positions(root: Path, name: str, suffix: str) -> list:
    """The output at the input, inside it (or beside it, for a file) and around it (the folder holding all)."""
    given = root / name
    inside = given / f"out{suffix}" if given.is_dir() else given
    return [given, inside, root]


@pytest.mark.parametrize("case", list(COMMANDS))
def test_no_command_writes_to_what_it_reads(case, inputs, tmp_path, capsys):
    template, names, flag = COMMANDS[case]
    suffix = {"--out-array": ".npy", "--out": ".png" if case == "sample" else ""}[flag]
    before = snapshot(inputs)
    for name in names:
        for place in positions(inputs, name, suffix):
            argv = template.replace("{tmp}", str(tmp_path))
            for known in ["images", "teacher", "student", "pipe", "prompts.txt"]:
                argv = argv.replace("{" + known + "}", str(inputs / known))
            argv = argv.split() + [flag, str(place), "--overwrite", "--quiet"]
            argv = [a for a in argv if not (case.startswith("sample") and a == "--overwrite")]
            code = main(argv)
            err = capsys.readouterr().err
            assert code == 1 and "never writes to what it reads" in err and len(err.strip().splitlines()) == 1, (
                argv,
                err,
            )
    assert snapshot(inputs) == before


def test_the_python_api_keeps_inputs_apart_too(inputs):
    from cfgdistill import DistillConfig, RunOptions, SampleConfig, UserError, distill, load, sample

    before = snapshot(inputs)
    with pytest.raises(UserError, match="lies inside teacher"):
        distill(inputs / "teacher", DistillConfig(steps=1), RunOptions(out=inputs / "teacher" / "s", overwrite=True))
    with pytest.raises(UserError, match="is teacher"):  # a loaded checkpoint keeps the folder it came from
        distill(load(inputs / "teacher"), DistillConfig(steps=1), RunOptions(out=inputs / "teacher", overwrite=True))
    with pytest.raises(UserError, match="lies inside model"):
        sample(inputs / "student", SampleConfig(n=1, steps=1, out=inputs / "student" / "x.png"))
    assert snapshot(inputs) == before


def test_nothing_in_the_library_can_unpickle_or_run_code_from_a_model_folder():
    """Every weight load passes use_safetensors=True (a scheduler's from_pretrained reads a JSON config only);
    nothing calls torch.load or pickle, or asks for remote code."""
    import ast

    src = Path(__file__).parents[1] / "src" / "cfgdistill"
    found = []
    for path in sorted(src.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                name, owner = node.func.attr, ast.unparse(node.func.value)
                words = {k.arg: ast.unparse(k.value) for k in node.keywords}
                if name == "from_pretrained" and "Scheduler" not in owner and words.get("use_safetensors") != "True":
                    found.append(f"{path.name}: {owner}.from_pretrained without use_safetensors=True")
                if (owner, name) in {("torch", "load"), ("pickle", "load"), ("pickle", "loads")}:
                    found.append(f"{path.name}: {owner}.{name}")
                if words.get("trust_remote_code") not in (None, "False"):
                    found.append(f"{path.name}: trust_remote_code")
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                found += [f"{path.name}: imports {n}" for n in names if n in ("pickle", "dill", "cloudpickle")]
    assert not found, found
