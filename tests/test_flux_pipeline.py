"""The latent Flux layout of `make fashion-flux-pipeline` at toy size: distilled from prompts, run by the stock
FluxPipeline in one transformer pass per step at guidance_scale = s, the teacher's folder left byte for byte."""

import pytest
import torch
from diffusers import FluxPipeline
from tiny_pipelines import TOKENS, flux_minilm_pipeline, snapshot

from cfgdistill.cli import main
from cfgdistill.pretrained.families import FAMILIES

RUN = ["--steps", "2", "--batch-size", "4", "--trajectory-steps", "3", "--warmup-steps", "0", "--quiet"]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    root = tmp_path_factory.mktemp("flux")
    flux_minilm_pipeline().save_pretrained(root / "teacher")
    (root / "prompts.txt").write_text("a coat\na red dress\nan ankle boot\n")
    return root


def draw(folder, steps: int = 3, **options) -> tuple:
    """(images, the transformer's calls) from the stock class, called as a user would for this pipeline."""
    pipe = FluxPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    calls = []
    pipe.transformer.register_forward_pre_hook(lambda m, a, kw: calls.append(kw), with_kwargs=True)
    generator = torch.Generator().manual_seed(0)
    size = {"height": 16, "width": 16, "max_sequence_length": TOKENS}
    out = pipe("a coat", num_inference_steps=steps, generator=generator, output_type="pt", **size, **options)
    return out.images, calls


@pytest.mark.parametrize("lora", [[], ["--lora-rank", "2"]])
def test_the_student_runs_once_per_step_guided_by_s_and_the_teacher_is_untouched(teacher, tmp_path, lora):
    before = snapshot(teacher)
    out = tmp_path / "student"
    args = ["distill", "--teacher", str(teacher / "teacher"), "--prompts", str(teacher / "prompts.txt")]
    assert main([*args, "--out", str(out), "--lr", "0.05", *RUN, *lora]) == 0
    assert snapshot(teacher) == before
    _, taught = draw(teacher / "teacher", true_cfg_scale=4.0, negative_prompt="")
    images, calls = draw(out, guidance_scale=4.0)
    assert len(taught) == 2 * len(calls) == 6  # CFG's two passes per step against the student's one
    assert all(kw["guidance"].tolist() == [4.0] for kw in calls)
    assert all(kw["encoder_hidden_states"].shape[1] == TOKENS for kw in calls)  # the length it was distilled at
    assert not torch.allclose(images, draw(out, guidance_scale=1.0)[0])


def test_the_flux_family_draws_the_vaes_size_and_the_tokenizers_length(teacher):
    """A Flux pipeline's default side is its VAE's sample size (FLUX.1's: 1024), not FluxPipeline's fixed 128
    latents; its prompts are padded to the second tokenizer's length, at most 512."""
    family, pipe = FAMILIES["flux"], FluxPipeline.from_pretrained(teacher / "teacher")
    assert family.call_arguments(pipe) == {"height": 16, "width": 16, "max_sequence_length": TOKENS}
    rows, null, layout = family.encode(pipe, ["a coat"], 16)
    assert layout == {"tokens": TOKENS, "dim": 16} and rows.shape == null[None].shape == (1, TOKENS * 16 + 16)
