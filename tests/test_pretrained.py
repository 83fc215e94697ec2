"""A user's diffusers pipeline as the teacher: tiny SD, SDXL and Flux pipelines, distilled from prompts by the CLI."""

import pytest
import torch
from diffusers import FluxPipeline, StableDiffusionPipeline, StableDiffusionXLPipeline, UNet2DConditionModel
from PIL import Image
from safetensors.torch import load_file
from tiny_pipelines import flux_pipeline, sd_pipeline, sdxl_pipeline

from cfgdistill.cli import main
from cfgdistill.networks.stock_unet import StockUNet, guidance_scale_embedding
from cfgdistill.pretrained.export import load_student_adapter
from cfgdistill.pretrained.families import FAMILIES

PROMPTS = ["a coat", "a red dress", "an ankle boot"]
BUILD = {"sd": sd_pipeline, "sd-v": lambda: sd_pipeline("v_prediction"), "sdxl": sdxl_pipeline, "flux": flux_pipeline}
STOCK = {"sd": StableDiffusionPipeline, "sd-v": StableDiffusionPipeline, "sdxl": StableDiffusionXLPipeline}
STOCK["flux"] = FluxPipeline
QUIET = ["--quiet", "--batch-size", "4", "--trajectory-steps", "4", "--warmup-steps", "0", "--checkpoint-every", "2"]
QUIET += ["--resolution", "16"]  # the tiny pipelines' images are 16 px


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
    family = FAMILIES[name.removesuffix("-v")]
    pipe = BUILD[name]()
    rows, null, layout = family.encode(pipe, PROMPTS, 16)
    return (*family.networks(pipe, null, layout, 16, lora_rank), rows)


def inputs(rows: torch.Tensor, seed: int = 1) -> tuple:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(len(rows), 4, 8, 8, generator=generator), torch.tensor([999.0, 500.0, 20.0]), rows


def test_guidance_embedding_is_the_stock_pipelines():
    for s in (0.0, 1.0, 2.5, 5.0, 7.5):
        stock = StableDiffusionPipeline.get_guidance_scale_embedding(None, torch.tensor(s - 1).repeat(3), 256)
        assert torch.equal(guidance_scale_embedding(torch.full((3,), s), 256), stock)


@pytest.mark.parametrize(
    "name,lora", [("sd", None), ("sd", 4), ("sdxl", None), ("sdxl", 4), ("flux", None), ("flux", 4)]
)
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
    trained = {name for name, p in student.named_parameters() if p.requires_grad}
    assert trained and all("lora_" in name or "cond_proj" in name for name in trained)  # nothing else trains
    full_teacher, full_student, _ = networks("sd")
    assert len(storage(full_teacher) | storage(full_student)) >= 2 * len(base)  # two copies without LoRA


@pytest.mark.parametrize(
    "name,lora",
    [
        ("sd", []),
        ("sd-v", ["--lora-rank", "4"]),
        ("sdxl", ["--lora-rank", "4"]),
        ("flux", []),
        ("flux", ["--lora-rank", "2"]),
    ],
)
def test_stock_pipeline_runs_the_student_once_per_step(saved, tmp_path, name, lora):
    """Rows the network sees per step at guidance_scale 5: the teacher's 2 (cond and uncond), the student's 1."""
    assert distill(saved, name, tmp_path / "student", *lora) == 0
    calls = {}
    for kind, folder in (("teacher", saved / name), ("student", tmp_path / "student")):
        pipe = STOCK[name].from_pretrained(folder)
        pipe.set_progress_bar_config(disable=True)
        network, calls[kind] = getattr(pipe, FAMILIES[name.removesuffix("-v")].network), []
        network.register_forward_pre_hook(lambda m, a, kw, seen=calls[kind]: seen.append((a, kw)), with_kwargs=True)
        options = {"true_cfg_scale": 5.0, "negative_prompt": ""} if kind == "teacher" and name == "flux" else {}
        pipe("a coat", num_inference_steps=3, guidance_scale=5.0, height=16, width=16, output_type="np", **options)
        steps = len(pipe.scheduler.timesteps)  # PNDM's first step takes two evaluations
    rows = {kind: sum(len(a[0] if a else kw["hidden_states"]) for a, kw in seen) for kind, seen in calls.items()}
    assert rows == {"teacher": 2 * steps, "student": steps} and len(calls["student"]) == steps
    student = [kw for _, kw in calls["student"]]
    if name == "flux":  # FluxPipeline feeds the student's guidance embedder s itself
        assert all(kw["guidance"].tolist() == [5.0] for kw in student)
    else:  # the stock UNet pipelines feed the embedding of w = s - 1
        assert all(kw["timestep_cond"] is None for _, kw in calls["teacher"])
        embedding = guidance_scale_embedding(torch.tensor([5.0]), 256)
        assert all(torch.equal(kw["timestep_cond"], embedding) for kw in student)


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
        a = StockUNet(merged, layout, cond[0], 8, guided=True)(x_t, t, cond, 4.0)
        b = StockUNet(adapted.eval(), layout, cond[0], 8, guided=True)(x_t, t, cond, 4.0)
        teacher_unet = UNet2DConditionModel.from_pretrained(saved / "sd" / "unet")
        teacher = StockUNet(teacher_unet, layout, cond[0], 8)(x_t, t, cond)
    assert (a - b).abs().max() < 1e-5 * a.abs().max()
    assert (a - teacher).abs().max() > 1e-3  # the adapter did train


@pytest.mark.parametrize("images,loss", [(True, "guidance"), (False, "eps"), (False, "guidance")])
def test_half_the_rows_off_the_paths_and_resume_is_exact(saved, tmp_path, images, loss):
    """Half of each batch noised: the user's images, or the teacher's own finished samples (a pool that the
    checkpoint carries); a run resumed from step 2 ends bitwise where the straight run does. The guidance
    weighting is measured on the images, or without them on teacher samples from fixed noise."""
    extra = ["--trajectory-fraction", "0.5", "--steps", "4", "--trajectory-steps", "2", "--loss-space", loss]
    if images:
        (tmp_path / "images").mkdir()
        for i in range(5):
            Image.new("RGB", (20, 12), (40 * i, 90, 200 - 30 * i)).save(tmp_path / "images" / f"{i}.png")
        extra += ["--images", str(tmp_path / "images")]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert distill(saved, "sd", straight, *extra) == 0
    step_2 = straight / "checkpoints" / "step-0000002"
    assert ("objective.pool.x_0" in load_file(step_2 / "state.safetensors")) != images
    assert distill(saved, "sd", resumed, *extra, "--resume", str(step_2)) == 0
    a, b = (load_file(f / "unet" / "diffusion_pytorch_model.safetensors") for f in (straight, resumed))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name,side,seeds", [("sd", 32, (0, 0, 1)), ("flux", 32, (0,))])
def test_sample_draws_a_pipeline_folder_with_its_stock_class(saved, tmp_path, name, side, seeds, capsys):
    """The teacher guided by CFG (Flux: true CFG against ""), seeded per image: the same seed, the same image.
    Grid cells are the images' size, at least 32 px (both tiny pipelines draw 16 px)."""
    grids = []
    for seed in seeds:
        out = tmp_path / f"grid{len(grids)}.png"
        args = ["sample", "--model", str(saved / name), "--prompt", "a coat", "--prompt", "a dress", "--n", "4"]
        assert main([*args, "-s", "4", "--steps", "2", "--seed", str(seed), "--out", str(out), "--quiet"]) == 0
        grids.append(Image.open(out).convert("RGB"))
    assert grids[0].size == (2 * (side + 2) + 2,) * 2
    if len(grids) == 3:
        assert list(grids[0].getdata()) == list(grids[1].getdata()) != list(grids[2].getdata())
    assert "from the teacher at s = 4, 2 steps, 2 passes per step" in capsys.readouterr().out


def test_prompt_table_draws_only_the_labels_own_prompts():
    from cfgdistill.pretrained.prompts import PromptConditioning

    classes = torch.tensor([0, 0, 0, 1, 2, 2])
    rows = torch.arange(6.0)[:, None] + 10
    table = PromptConditioning([f"p{i}" for i in range(6)], rows, torch.zeros(1), {}, classes)
    labels = torch.tensor([0, 1, 2] * 400)
    drawn = table.draw(labels, torch.Generator().manual_seed(0), p_uncond=0.0)[:, 0].long() - 10
    assert torch.equal(classes[drawn], labels)
    assert set(drawn[labels == 0].tolist()) == {0, 1, 2} and set(drawn[labels == 2].tolist()) == {4, 5}
    dropped = table.draw(labels, torch.Generator().manual_seed(0), p_uncond=1.0)
    assert dropped.abs().max() == 0


def test_autoencoding_kl_is_the_gaussian_kl_to_the_standard_normal():
    """The objective's KL term against torch.distributions, on a VAE whose decoder is switched off."""
    import importlib.util
    from pathlib import Path

    from diffusers import AutoencoderKL

    path = Path(__file__).parents[1] / "benchmarks" / "latent_pipeline.py"
    spec = importlib.util.spec_from_file_location("latent_pipeline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    Autoencoding = module.Autoencoding

    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=(8,), norm_num_groups=4, latent_channels=2, in_channels=1, out_channels=1)
    x = torch.rand(3, 1, 8, 8) * 2 - 1
    objective = Autoencoding((2, 8, 8), kl_weight=1.0)
    rows = objective.draw(x, None, torch.Generator().manual_seed(1))
    posterior = vae.encode(x).latent_dist
    normal = torch.distributions.Normal
    kl = torch.distributions.kl_divergence(normal(posterior.mean, posterior.std), normal(0.0, 1.0)).mean()
    recon = vae.decode(posterior.mean + posterior.std * rows["eps"]).sample
    expected = torch.nn.functional.mse_loss(recon, x) + kl
    assert torch.allclose(objective.loss(vae, rows), expected, rtol=1e-5)


def test_lora_base_in_bf16_trains_float32_weights_and_exports(saved, tmp_path):
    """--mixed-precision bf16 with LoRA stores the frozen base in bf16 and trains float32 adapters and guidance
    input; with gradient checkpointing the run completes, and the stock class loads its float32 export."""
    family, pipe = FAMILIES["sd"], BUILD["sd"]()
    rows, null, layout = family.encode(pipe, PROMPTS, 16)
    teacher, student = family.networks(pipe, null, layout, 16, 4, torch.bfloat16)
    dtypes = {(p.requires_grad, p.dtype) for p in student.parameters()}
    assert dtypes == {(False, torch.bfloat16), (True, torch.float32)}
    x_t, t, cond = inputs(rows)
    with torch.no_grad():
        out = teacher(x_t, t, cond)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    extra = ["--lora-rank", "4", "--mixed-precision", "bf16", "--gradient-checkpointing"]
    assert distill(saved, "sd", tmp_path / "student", *extra) == 0
    unet = UNet2DConditionModel.from_pretrained(tmp_path / "student" / "unet")
    assert {p.dtype for p in unet.parameters()} == {torch.float32}


def fresh_student(saved, out, prompts: list):
    """The tiny SD teacher's student before any training, exported: it draws the teacher's conditional model."""
    from cfgdistill.pretrained.export import PipelineStudent

    _, student, _ = networks("sd")
    PipelineStudent(saved / "sd", "unet", student.network, False, {"prompts": prompts}).save(out)
    return out


def test_evaluate_a_fresh_pipeline_student_reproduces_none_of_the_guidance(saved, tmp_path):
    """The fresh student equals the teacher at s = 1, so it sits exactly as far from the guided teacher as the
    teacher's own conditional samples: none of the guidance effect is reproduced."""
    from cfgdistill import EvaluateConfig, evaluate

    student = fresh_student(saved, tmp_path / "fresh", PROMPTS)
    config = EvaluateConfig(guidance=[1.0, 4.0], steps=2, n=6, out=tmp_path / "report", quiet=True)
    rows = evaluate(saved / "sd", student, config).report["rows"]
    assert rows[0]["paired_relative_error"] < 1e-5 and rows[0]["guidance_reproduced"] is None  # nothing to carry
    assert rows[1]["conditional_relative_error"] > 0.01
    assert rows[1]["paired_relative_error"] == pytest.approx(rows[1]["conditional_relative_error"], rel=1e-4)
    assert abs(rows[1]["guidance_reproduced"]) < 1e-3 and rows[1]["throughput_ratio"] > 0
    assert {p.name for p in (tmp_path / "report").iterdir()} == {"report.json", "report.md", "samples.png"}


def test_evaluate_judges_a_pipeline_that_records_its_dataset(saved, tmp_path, capsys):
    """A pipeline with cfgdistill_data.json (digits here: 16 px cropped to 12, resized to 8) gets FD, accuracy and
    the gates; its prompts are drawn class by class in turn."""
    import json
    import shutil

    teacher = shutil.copytree(saved / "sd", tmp_path / "teacher")
    (teacher / "cfgdistill_data.json").write_text(json.dumps({"data": "digits", "crop": 2}))
    grouped = [f"the {word} {d}" for d in range(10) for word in ("digit", "number")]
    (tmp_path / "digits.txt").write_text("\n".join(grouped))
    args = ["distill", "--teacher", str(teacher), "--prompts", str(tmp_path / "digits.txt"), "--steps", "2"]
    assert main([*args, "--out", str(tmp_path / "student"), *QUIET]) == 0
    args = ["evaluate", "--teacher", str(teacher), "--student", str(tmp_path / "student"), "--n", "20"]
    assert main([*args, "--guidance", "2,3", "--steps", "2", "--out", str(tmp_path / "r"), "--quiet"]) == 0
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["prompts"] == [f"the {word} {d}" for word in ("digit", "number") for d in range(10)]
    assert report["dataset"] == "digits" and report["fd_noise_floor"] > 0
    for row in report["rows"]:
        assert set(row["student_matches"]) == {"fd", "accuracy"} and 0 <= row["student"]["accuracy"] <= 1
    assert "| 3 |" in capsys.readouterr().out
