"""Every row of docs/errors.md, run as written: exit code, one-line message, and nothing on disk changed."""

import hashlib
import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
from diffusers import UNet2DModel
from PIL import Image
from safetensors.torch import load_file, save_file
from tiny_pipelines import sd_pipeline

from cfgdistill.cli import main

TABLE = Path(__file__).parents[1] / "docs" / "errors.md"
ROW = re.compile(
    r"^\| (?P<case>[^|`]+?) \| `(?P<env>(\w+=\S+ )*)cfgdistill (?P<command>[^`]+)` \| (?P<exit>\d+) \| "
    r"`(?P<message>[^`]+)` \|$"
)


def table_rows() -> dict:
    rows = {m["case"]: m for m in map(ROW.match, TABLE.read_text().splitlines()) if m}
    assert len(rows) >= 30, "docs/errors.md lost its table"
    return rows


def copy_model(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("checkpoints", "logs"))
    return target


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """The folders the table's placeholders name: real runs through the CLI, then damaged copies of them."""
    root = tmp_path_factory.mktemp("bad-input")
    teacher, student = root / "teacher", root / "student"
    quiet = ["--quiet", "--validate-every", "0", "--batch-size", "16"]
    assert main(["train", "--out", str(teacher), "--steps", "4", "--checkpoint-every", "2", *quiet]) == 0
    distill = ["distill", "--teacher", str(teacher), "--out", str(student), "--steps", "2", "--checkpoint-every", "2"]
    assert main([*distill, *quiet]) == 0
    flux_folders(root, teacher, quiet)
    text = ["--data", "digits", "--conditioning", "text", "--block-out-channels", "8,16"]
    assert main(["train", "--out", str(root / "textteacher"), "--steps", "2", *text, *quiet]) == 0
    plain = ["distill", "--teacher", str(root / "textteacher"), "--out", str(root / "textstudent"), "--steps", "1"]
    assert main([*plain, *quiet]) == 0
    fewstep_folders(root, student, quiet)
    pipeline_folders(root)
    damaged_copies(root, teacher, student)
    return root


def damaged_copies(root: Path, teacher: Path, student: Path):
    """Copies of the runs with one thing wrong each, and folders that are not what a flag asks for."""
    (root / "empty").mkdir()
    UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        block_out_channels=(8, 16),
        norm_num_groups=4,
        down_block_types=("DownBlock2D",) * 2,
        up_block_types=("UpBlock2D",) * 2,
    ).save_pretrained(root / "foreign")
    (copy_model(teacher, root / "badjson") / "cfgdistill.json").write_text("{not json")
    weights = "denoiser/diffusion_pytorch_model.safetensors"
    data = (teacher / weights).read_bytes()
    (copy_model(teacher, root / "truncated") / weights).write_bytes(data[: len(data) // 2])
    (copy_model(teacher, root / "corrupted") / weights).write_bytes(b"\xff" * 16 + data[16:])
    meta = json.loads((teacher / "cfgdistill.json").read_text())
    (copy_model(teacher, root / "mislabelled") / "cfgdistill.json").write_text(json.dumps({**meta, "kind": "student"}))
    config = json.loads((teacher / "denoiser/config.json").read_text())
    (copy_model(teacher, root / "wrongshape") / "denoiser/config.json").write_text(
        json.dumps({**config, "block_out_channels": [16, 32]})
    )
    step = teacher / "checkpoints" / "step-0000002"
    (shutil.copytree(step, root / "incomplete") / "COMPLETE").unlink()
    state = shutil.copytree(step, root / "damaged_state") / "state.safetensors"
    state.write_bytes(state.read_bytes()[:100])
    (root / "file").write_text("a file, not a folder\n")
    gated = copy_model(student, root / "gatedstudent") / "denoiser/config.json"
    edit_json(gated, lambda c: c.update(guidance_times_w=True))  # a retired option, on
    damage_fields(root, teacher)
    for name in ("emptyimage", "brokenimage"):
        for label in "ab":
            (root / name / label).mkdir(parents=True)
            for i in range(5):
                Image.new("L", (8, 8), 30 * i).save(root / name / label / f"{i}.png")
    (root / "emptyimage" / "b" / "4.png").write_bytes(b"")
    (root / "brokenimage" / "a" / "0.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short")


def fewstep_folders(root: Path, student: Path, quiet: list):
    """A finished two-round progressive run (4 → 2 → 1 steps), and the student relabelled as eps-prediction."""
    rounds = ["--start-steps", "4", "--rounds", "2", "--steps-per-round", "2", "--checkpoint-every", "1"]
    assert main(["progressive", "--student", str(student), "--out", str(root / "fewstep"), *rounds, *quiet]) == 0
    eps = copy_model(student, root / "epsstudent")
    edit_json(eps / "scheduler/scheduler_config.json", lambda c: c.update(prediction_type="epsilon"))
    edit_json(eps / "cfgdistill.json", lambda m: m.update(prediction_type="epsilon"))


def flux_folders(root: Path, teacher: Path, quiet: list):
    """A flow + Flux teacher, and copies of it with a contradicting guidance_embeds, no transformer, a VP schedule."""
    flux = ["--objective", "flow", "--arch", "flux", "--num-layers", "1", "--num-single-layers", "1"]
    flux += ["--attention-head-dim", "8", "--num-attention-heads", "2"]
    assert main(["train", "--out", str(root / "flowteacher"), "--steps", "2", *flux, *quiet]) == 0
    edit_json(
        copy_model(root / "flowteacher", root / "embedsmismatch") / "transformer/config.json",
        lambda c: c.update(guidance_embeds=True),
    )
    shutil.rmtree(copy_model(root / "flowteacher", root / "notransformer") / "transformer")
    shutil.rmtree(copy_model(root / "flowteacher", root / "ddpmflow") / "scheduler")
    shutil.copytree(teacher / "scheduler", root / "ddpmflow" / "scheduler")


def pipeline_folders(root: Path):
    """A tiny SD pipeline, one of an unsupported class, its distilled student, prompts files, broken images."""
    sd_pipeline().save_pretrained(root / "sdpipe")
    edit_json(copy_model(root / "sdpipe", root / "otherpipe") / "model_index.json", lambda c: c.update(_class_name="X"))
    (root / "prompts").write_text("a coat\n")
    (root / "blankprompts").write_text("\n   \n\t\n")
    (root / "emptyprompts").write_text("")
    distill = ["distill", "--teacher", str(root / "sdpipe"), "--prompts", str(root / "prompts"), "--steps", "1"]
    assert main([*distill, "--out", str(root / "sdstudent"), "--quiet", "--batch-size", "2"]) == 0
    (root / "pipeimages").mkdir()
    (root / "pipeimages" / "0.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    odd_pipeline_folders(root)


def odd_pipeline_folders(root: Path):
    """Copies of the SD pipeline that a user or diffusers might leave odd, one thing each."""
    index = lambda name, change: edit_json(copy_model(root / "sdpipe", root / name) / "model_index.json", change)
    index("unknownclass", lambda c: c.update(unet=["diffusers", "NoSuchUNet"]))
    index("custommodule", lambda c: c.update(unet=["my_unet", "MyUNet"]))
    index("stringentry", lambda c: c.update(unet="UNet2DConditionModel"))
    index("flowsd", lambda c: c.update(scheduler=["diffusers", "FlowMatchEulerDiscreteScheduler"]))
    shutil.rmtree(copy_model(root / "sdpipe", root / "nounet") / "unet")
    shutil.rmtree(copy_model(root / "sdpipe", root / "unetfile") / "unet")
    (root / "unetfile" / "unet").write_text("not a folder\n")
    (copy_model(root / "sdpipe", root / "looppipe") / "unet" / "loop").symlink_to("loop")
    weights = copy_model(root / "sdpipe", root / "binpipe") / "unet" / "diffusion_pytorch_model.safetensors"
    weights.rename(weights.with_suffix(".bin"))
    unet = lambda name, change: edit_json(copy_model(root / "sdpipe", root / name) / "unet" / "config.json", change)
    unet("nullfield", lambda c: c.update(in_channels=None))
    unet("textfield", lambda c: c.update(layers_per_block="two"))
    (root / "ckptfile").mkdir()
    (root / "ckptfile" / "checkpoints").write_text("a file where a run keeps its checkpoints\n")


def edit_json(path: Path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def damage_fields(root: Path, teacher: Path):
    """Copies of the teacher with one tampered field each, and data whose classes are not the teacher's."""
    damages = {
        "strsize": ("denoiser/config.json", lambda c: c.update(sample_size="8")),
        "hugesize": ("denoiser/config.json", lambda c: c.update(sample_size=10**12)),
        "negsize": ("denoiser/config.json", lambda c: c.update(sample_size=-8)),
        "oddsize": ("denoiser/config.json", lambda c: c.update(sample_size=7)),
        "nodata": ("cfgdistill.json", lambda m: m.pop("data")),
        "strimages": ("cfgdistill.json", lambda m: m["data"].update(train_images="many")),
        "zerotimesteps": ("scheduler/scheduler_config.json", lambda c: c.update(num_train_timesteps=0)),
    }
    for name, (file, change) in damages.items():
        edit_json(copy_model(teacher, root / name) / file, change)
    shutil.rmtree(copy_model(teacher, root / "nodenoiser") / "denoiser")
    weights = copy_model(teacher, root / "nanweights") / "denoiser/diffusion_pytorch_model.safetensors"
    tensors = load_file(weights)
    tensors = {k: v.fill_(float("nan")) if "conv_out" in k else v for k, v in tensors.items()}
    save_file(tensors, weights)
    step = shutil.copytree(teacher / "checkpoints" / "step-0000002", root / "strstep")
    edit_json(step / "state.json", lambda m: m.update(step="two"))
    for label in ("a", "b"):
        (root / "twoclass" / label).mkdir(parents=True)
        for i in range(5):
            Image.new("L", (8, 8), 40 * i).save(root / "twoclass" / label / f"{i}.png")


def snapshot(root: Path) -> dict:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("case", list(table_rows()))
def test_bad_input_is_refused_in_one_line(case, prepared, tmp_path, capsys, monkeypatch):
    row = table_rows()[case]
    for name, value in (pair.split("=", 1) for pair in row["env"].split()):  # `WORLD_SIZE=2 cfgdistill ...`
        monkeypatch.setenv(name, value)
    places = {p.name: str(p) for p in prepared.iterdir()} | {"tmp": str(tmp_path), "badutf8": "caf\udce9"}
    fill = lambda text: re.sub(r"\{(\w+)\}", lambda m: places[m[1]], text)
    before = snapshot(prepared)
    try:
        code = main(shlex.split(fill(row["command"])))
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err
    assert code == int(row["exit"]), err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert fill(row["message"]) in err
    assert snapshot(prepared) == before
