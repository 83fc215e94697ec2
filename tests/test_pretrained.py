"""A user's diffusers pipeline as the teacher: tiny SD and SDXL pipelines, distilled from prompts through the CLI."""

import pytest
import torch
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline, UNet2DConditionModel
from PIL import Image
from safetensors.torch import load_file
from tiny_pipelines import sd_pipeline, sdxl_pipeline

from cfgdistill.cli import main
from cfgdistill.networks.stock_unet import StockUNet, guidance_scale_embedding
from cfgdistill.pretrained.export import load_student_adapter
from cfgdistill.pretrained.families import FAMILIES

PROMPTS = ["a coat", "a red dress", "an ankle boot"]
BUILD = {"sd": sd_pipeline, "sd-v": lambda: sd_pipeline("v_prediction"), "sdxl": sdxl_pipeline}
STOCK = {"sd": StableDiffusionPipeline, "sd-v": StableDiffusionPipeline, "sdxl": StableDiffusionXLPipeline}
QUIET = ["--quiet", "--batch-size", "4", "--trajectory-steps", "4", "--warmup-steps", "0", "--checkpoint-every", "2"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Each tiny pipeline saved with save_pretrained, and a prompts file."""
    root = tmp_path_factory.mktemp("pipelines")
    for name, build in BUILD.items():
        build().save_pretrained(root / name)
    (root / "prompts.txt").write_text("\n".join(["", *PROMPTS, "   "]) + "\n")
    return root


def distill(saved, name: str, out, *extra) -> int:
    args = ["distill", "--teacher", str(saved / name), "--prompts", str(saved / "prompts.txt"), "--out", str(out)]
    return main([*args, "--steps", "2", *QUIET, *extra])


def networks(name: str, lora_rank=None) -> tuple:
    family = FAMILIES["sdxl" if name == "sdxl" else "sd"]
    pipe = BUILD[name]()
    rows, null, layout = family.encode(pipe, PROMPTS)
    return (*family.networks(pipe, null, layout, lora_rank), rows)


def inputs(rows: torch.Tensor, seed: int = 1) -> tuple:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(len(rows), 4, 8, 8, generator=generator), torch.tensor([999, 500, 20]), rows


def test_guidance_embedding_is_the_stock_pipelines():
    for s in (0.0, 1.0, 2.5, 5.0, 7.5):
        stock = StableDiffusionPipeline.get_guidance_scale_embedding(None, torch.tensor(s - 1).repeat(3), 256)
        assert torch.equal(guidance_scale_embedding(torch.full((3,), s), 256), stock)


@pytest.mark.parametrize("name,lora", [("sd", None), ("sd", 4), ("sdxl", None), ("sdxl", 4)])
def test_new_student_is_the_teachers_conditional_model(name, lora):
    teacher, student, rows = networks(name, lora)
    student.requires_grad_(False)  # CPU kernels for weights that need gradients may round differently
    x_t, t, cond = inputs(rows)
    with torch.no_grad():
        expected = teacher(x_t, t, cond)
        for s in (0.0, 3.0, 7.5):
            assert torch.equal(student(x_t, t, cond, s), expected)
    assert not torch.equal(teacher(x_t, t, None), expected)  # the condition matters


def test_lora_student_shares_the_teachers_weights():
    teacher, student, _ = networks("sd", lora_rank=4)
    storage = lambda model: {p.untyped_storage().data_ptr() for p in model.parameters()}
    base = {p.untyped_storage().data_ptr() for p in BUILD["sd"]().unet.parameters()}
    assert storage(teacher) == storage(student) and teacher.unet is student.unet
    trained = [p for p in student.parameters() if p.requires_grad]
    assert 0 < sum(p.numel() for p in trained) < 0.25 * sum(p.numel() for p in student.parameters())
    full_teacher, full_student, _ = networks("sd")
    assert len(storage(full_teacher) | storage(full_student)) >= 2 * len(base)  # two copies without LoRA


@pytest.mark.parametrize("name,lora", [("sd", []), ("sd-v", ["--lora-rank", "4"]), ("sdxl", ["--lora-rank", "4"])])
def test_stock_pipeline_runs_the_student_once_per_step(saved, tmp_path, name, lora):
    assert distill(saved, name, tmp_path / "student", *lora) == 0
    counts = {}
    for kind, folder in (("teacher", saved / name), ("student", tmp_path / "student")):
        pipe = STOCK[name].from_pretrained(folder)
        pipe.set_progress_bar_config(disable=True)
        calls = []
        pipe.unet.register_forward_pre_hook(lambda m, a, kw: calls.append((len(a[0]), kw)), with_kwargs=True)
        pipe("a coat", num_inference_steps=3, guidance_scale=5.0, output_type="np")
        counts[kind], steps = calls, len(pipe.scheduler.timesteps)  # PNDM's first step takes two evaluations
    assert [rows for rows, _ in counts["teacher"]] == [2] * steps  # cond and uncond, batched
    assert [rows for rows, _ in counts["student"]] == [1] * steps
    embedding = counts["student"][0][1]["timestep_cond"]
    assert torch.equal(embedding, guidance_scale_embedding(torch.tensor([5.0]), 256))


def test_merged_export_equals_the_adapter_on_the_teacher(saved, tmp_path):
    out = tmp_path / "student"
    assert distill(saved, "sd", out, "--lora-rank", "4", "--lr", "0.05") == 0
    merged = UNet2DConditionModel.from_pretrained(out / "unet").eval()
    adapted = load_student_adapter(UNet2DConditionModel.from_pretrained(saved / "sd" / "unet"), out / "unet_lora")
    guidance_input = load_file(out / "unet_lora" / "guidance_input.safetensors")
    assert guidance_input["time_embedding.cond_proj.weight"].abs().max() > 0
    layout = {"tokens": 8, "dim": 32}
    x_t, t, _ = inputs(torch.zeros(3, 1))
    cond = torch.randn(3, 8 * 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        a = StockUNet(merged, layout, cond[0], guided=True)(x_t, t, cond, 4.0)
        b = StockUNet(adapted.eval(), layout, cond[0], guided=True)(x_t, t, cond, 4.0)
        teacher = StockUNet(UNet2DConditionModel.from_pretrained(saved / "sd" / "unet"), layout, cond[0])(x_t, t, cond)
    assert (a - b).abs().max() < 1e-5 * a.abs().max()
    assert (a - teacher).abs().max() > 1e-3  # the adapter did train


def test_images_join_the_teachers_paths_and_resume_is_exact(saved, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(5):
        Image.new("RGB", (20, 12), (40 * i, 90, 200 - 30 * i)).save(images / f"{i}.png")
    extra = ["--images", str(images), "--trajectory-fraction", "0.5", "--loss-space", "guidance"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert distill(saved, "sd", straight, *extra, "--steps", "4") == 0
    step_2 = straight / "checkpoints" / "step-0000002"
    assert distill(saved, "sd", resumed, *extra, "--steps", "4", "--resume", str(step_2)) == 0
    a, b = (load_file(f / "unet" / "diffusion_pytorch_model.safetensors") for f in (straight, resumed))
    assert all(torch.equal(a[k], b[k]) for k in a)
