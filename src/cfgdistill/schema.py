"""Field-by-field checks of the JSON files a checkpoint is made of, before anything is built from them.

A bad field is one line naming the file, the field, what it holds and what was expected.
"""

import json
import math
from pathlib import Path

from .config.choices import PREDICTIONS
from .errors import UserError


def whole(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def positive(v) -> bool:
    return whole(v) and 0 < v < 2**31


def text(v) -> bool:
    return isinstance(v, str)


def flag(v) -> bool:
    return isinstance(v, bool)


def table(v) -> bool:
    return isinstance(v, dict)


def numbers_table(v) -> bool:
    return isinstance(v, dict) and all(isinstance(x, (int, float)) and math.isfinite(x) for x in v.values())


def scale_range(v) -> bool:
    pair = isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, (int, float)) for x in v)
    return v is None or (pair and all(math.isfinite(x) for x in v) and v[0] <= v[1])


def one_of(*values):
    return lambda v: isinstance(v, str) and v in values


def optional(check):
    return lambda v: v is None or check(v)


def list_of(check, length=None):
    return lambda v: isinstance(v, list) and bool(v) and (length is None or len(v) == length) and all(map(check, v))


def widths(v) -> bool:
    return list_of(lambda w: positive(w) and w % 4 == 0)(v)


def image_shape(v) -> bool:
    return list_of(positive, 3)(v) and v[0] in (1, 3) and v[1] == v[2]


META = {
    "kind": (one_of("teacher", "student"), "teacher or student"),
    "process": (text, "a forward process name"),
    "guidance": (table, "an object"),
    "prediction_type": (one_of(*PREDICTIONS, "flow_prediction"), " or ".join((*PREDICTIONS, "flow_prediction"))),
    "data": (table, "an object"),
    "conditioning": (table, "an object"),
    "training": (table, "an object"),
}
DATA = {
    "name": (text, "a dataset name or folder"),
    "image_shape": (image_shape, "[channels (1 or 3), side, side]"),
    "train_images": (lambda v: whole(v) and v >= 0, "a whole number >= 0"),
}
SAMPLING = {
    "grid": (
        lambda v: list_of(number(0))(v) and all(a > b for a, b in zip(v, v[1:])),
        "a non-empty descending list of timesteps >= 0",
    ),
}
GUIDANCE = {
    "trained_range": (scale_range, "null or [low, high], finite, low <= high"),
    "rule": (text, "a rule name"),
    "options": (optional(numbers_table), "null or the rule's options, each a finite number"),
    "guide_model": (optional(text), "null or the guide model's folder"),
}
CONDITIONING = {
    "type": (one_of("class", "text"), "class or text"),
    "class_names": (list_of(text), "a non-empty list of class names"),
}
TEXT_CONDITIONING = {
    "training_prompts": (table, "an object of prompts per class"),
    "held_out_prompts": (table, "an object of prompts per class"),
    "tokens": (optional(positive), "null (pooled embedding only) or the number of token states"),
}


def number(low=-math.inf, high=math.inf):
    return lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and low <= v <= high


NETWORK_CLASSES = ("Denoiser", "FluxConditioner")
NETWORK = {
    "sample_size": (positive, "a whole number > 0"),
    "in_channels": (lambda v: v in (1, 3) and whole(v), "1 or 3"),
    "num_classes": (positive, "a whole number > 0"),
    "block_out_channels": (widths, "a list of positive multiples of 4"),
    "layers_per_block": (positive, "a whole number > 0"),
    "attention": (flag, "true or false"),
    "guidance_embedding": (flag, "true or false"),
    "guidance_range": (scale_range, "null or [low, high], finite, low <= high"),
    "text_dim": (optional(positive), "null or a whole number > 0"),
    "scale_shift": (flag, "true or false"),
    "negative_embedding": (flag, "true or false"),
    "negative_times_guidance": (flag, "true or false"),
    "guidance_times_w": (flag, "true or false"),
    "negative_joint": (flag, "true or false"),
}


FLUX_CONDITIONER = {
    "sample_size": (positive, "a whole number > 0"),
    "in_channels": (lambda v: v in (1, 3) and whole(v), "1 or 3"),
    "num_classes": (positive, "a whole number > 0"),
    "text_dim": (optional(positive), "null or a whole number > 0"),
    "text_tokens": (positive, "a whole number > 0"),
    "class_tokens": (positive, "a whole number > 0"),
    "dim": (positive, "a whole number > 0"),
    "guidance_range": (scale_range, "null or [low, high], finite, low <= high"),
}
FLUX_TRANSFORMER = {
    "patch_size": (lambda v: v == 1 and whole(v), "1 (pixels are packed into tokens before the transformer)"),
    "in_channels": (positive, "a whole number > 0"),
    "num_layers": (lambda v: whole(v) and 0 <= v < 1000, "a whole number in [0, 1000)"),
    "num_single_layers": (lambda v: whole(v) and 0 <= v < 1000, "a whole number in [0, 1000)"),
    "attention_head_dim": (positive, "a whole number > 0"),
    "num_attention_heads": (positive, "a whole number > 0"),
    "joint_attention_dim": (positive, "a whole number > 0"),
    "pooled_projection_dim": (positive, "a whole number > 0"),
    "guidance_embeds": (flag, "true or false"),
    "axes_dims_rope": (list_of(lambda v: positive(v) and v % 2 == 0, 3), "three positive even numbers"),
}
SCHEDULER = {
    "_class_name": (one_of("DDPMScheduler"), "DDPMScheduler, the schedule of a vp model"),
    "num_train_timesteps": (lambda v: positive(v) and v >= 2, "a whole number >= 2"),
    "prediction_type": (one_of(*PREDICTIONS), " or ".join(PREDICTIONS)),
    "beta_schedule": (one_of("linear", "scaled_linear", "squaredcos_cap_v2"), "a diffusers beta schedule"),
    "beta_start": (number(0, 1), "a number in [0, 1]"),
    "beta_end": (number(0, 1), "a number in [0, 1]"),
    "trained_betas": (lambda v: v is None, "null"),
    "clip_sample": (flag, "true or false"),
    "clip_sample_range": (number(0), "a number >= 0"),
    "thresholding": (flag, "true or false"),
    "dynamic_thresholding_ratio": (number(0, 1), "a number in [0, 1]"),
    "sample_max_value": (number(0), "a number >= 0"),
    "rescale_betas_zero_snr": (flag, "true or false"),
    "steps_offset": (lambda v: whole(v) and 0 <= v < 1000, "a whole number in [0, 1000)"),
    "timestep_spacing": (one_of("leading", "linspace", "trailing"), "leading, linspace or trailing"),
    "variance_type": (
        one_of("fixed_small", "fixed_small_log", "fixed_large", "fixed_large_log", "learned", "learned_range"),
        "a diffusers variance type",
    ),
}
FLOW_SCHEDULER = {
    "_class_name": (one_of("FlowMatchEulerDiscreteScheduler"), "FlowMatchEulerDiscreteScheduler, a flow model's"),
    "num_train_timesteps": (lambda v: positive(v) and v >= 2, "a whole number >= 2"),
    "shift": (lambda v: number(0)(v) and v > 0, "a number > 0"),
    "use_dynamic_shifting": (lambda v: v is False, "false"),
    "invert_sigmas": (lambda v: v is False, "false"),
    "stochastic_sampling": (lambda v: v is False, "false"),
    "shift_terminal": (lambda v: v is None, "null"),
    "use_karras_sigmas": (lambda v: v is False, "false"),
    "use_exponential_sigmas": (lambda v: v is False, "false"),
    "use_beta_sigmas": (lambda v: v is False, "false"),
    "time_shift_type": (one_of("exponential", "linear"), "exponential or linear"),
    "base_shift": (optional(number()), "null or a number"),
    "max_shift": (optional(number()), "null or a number"),
    "base_image_seq_len": (positive, "a whole number > 0"),
    "max_image_seq_len": (positive, "a whole number > 0"),
}
STATE = {
    "step": (positive, "a whole number > 0"),
    "kind": (text, "teacher or student"),
    "recipe": (table, "an object"),
    "ema": (table, "an object"),
    "optimizer": (table, "an object"),
    "lr_schedule": (table, "an object"),
}

OPTIMIZER = {
    "param_groups": (list_of(table), "a list of parameter groups"),
    "scalars": (lambda v: table(v) and all(map(table, v.values())), "an object of objects"),
}


def check(where, raw: dict, spec: dict, optional_fields: tuple = ()):
    """Every field of `spec` in `raw` (those in `optional_fields` may be absent) passes its check."""
    if not isinstance(raw, dict):
        raise UserError(f"{where}: expected a JSON object, found {type(raw).__name__}")
    for field, (ok, expected) in spec.items():
        if field not in raw:
            if field in optional_fields:
                continue
            raise UserError(f"{where}: field {field!r} is missing; expected {expected}")
        if not ok(raw[field]):
            raise UserError(f"{where}: field {field!r} is {json.dumps(raw[field])[:60]}; expected {expected}")


def read_json(path: Path) -> dict:
    """A JSON file as a dict, or one line saying why it cannot be one."""
    if not path.is_file():
        raise UserError(f"{path} is missing")
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"{path} is not valid JSON: {str(error).splitlines()[0]}") from None


def check_meta(where, raw: dict):
    check(where, raw, META, optional_fields=("process", "guidance"))
    if raw.get("sampling") is not None:
        check(f"{where} (sampling)", raw["sampling"], SAMPLING)
    check(f"{where} (data)", raw["data"], DATA)
    check(f"{where} (guidance)", raw.get("guidance", {}), GUIDANCE, optional_fields=tuple(GUIDANCE))
    check(f"{where} (conditioning)", raw["conditioning"], CONDITIONING)
    if raw["conditioning"]["type"] == "text":
        check(f"{where} (conditioning)", raw["conditioning"], TEXT_CONDITIONING, optional_fields=("tokens",))


def check_network(folder: Path, meta) -> dict:
    """The network config of a checkpoint folder, checked, and consistent with its metadata."""
    where = folder / "denoiser" / "config.json"
    config = read_json(where)
    check(where, config, {"_class_name": (one_of(*NETWORK_CLASSES), " or ".join(NETWORK_CLASSES))})
    if config["_class_name"] == "FluxConditioner":
        check_flux(folder, config, meta)
    else:
        check_unet(where, config)
    shape = [config["in_channels"], config["sample_size"], config["sample_size"]]
    if shape != list(meta.data.image_shape):
        raise UserError(f"{where}: the network draws {shape} images, but cfgdistill.json says {meta.data.image_shape}")
    tokens = config["text_tokens"] if config["_class_name"] == "FluxConditioner" and config["text_dim"] else None
    if meta.conditioning.get("tokens") != tokens:
        raise UserError(
            f"{where}: the network takes {tokens or 'no'} token states, but cfgdistill.json's conditioning "
            f"gives {meta.conditioning.get('tokens') or 'none'}"
        )
    if config["num_classes"] != len(meta.conditioning["class_names"]):
        raise UserError(
            f"{where}: field 'num_classes' is {config['num_classes']}; cfgdistill.json names "
            f"{len(meta.conditioning['class_names'])} classes"
        )
    return config


def check_unet(where: Path, config: dict):
    late = ("negative_embedding", "negative_times_guidance", "guidance_times_w", "negative_joint")  # added later
    check(where, config, NETWORK, optional_fields=late)
    levels = len(config["block_out_channels"])
    if config["sample_size"] % 2 ** (levels - 1):
        raise UserError(
            f"{where}: field 'sample_size' is {config['sample_size']}; expected a multiple of "
            f"{2 ** (levels - 1)} for {levels} UNet levels"
        )


def check_flux(folder: Path, config: dict, meta):
    """Our conditioner and the stock transformer's config, and that the two (and cfgdistill.json) agree."""
    where, inner = folder / "denoiser" / "config.json", folder / "transformer" / "config.json"
    check(where, config, FLUX_CONDITIONER)
    net = read_json(inner)
    check(inner, net, FLUX_TRANSFORMER)
    width = config["text_dim"] or config["dim"]
    c, n = config, net
    problems = {  # field: (holds, file, what it should be)
        "sample_size": (c["sample_size"] % 2 == 0, where, "an even side (FLUX packs 2×2 pixels into a token)"),
        "in_channels": (n["in_channels"] == 4 * c["in_channels"], inner, "4 × the image channels"),
        "axes_dims_rope": (sum(n["axes_dims_rope"]) == n["attention_head_dim"], inner, "summing to the head size"),
        "joint_attention_dim": (n["joint_attention_dim"] == width, inner, f"{width}, the condition's width"),
        "pooled_projection_dim": (n["pooled_projection_dim"] == width, inner, f"{width}, the condition's width"),
        "text_dim": ((c["text_dim"] is not None) == (meta.conditioning["type"] == "text"), where, "the conditioning's"),
    }
    for name, (ok, file, expected) in problems.items():
        if not ok:
            value = (c if file == where else n)[name]
            raise UserError(f"{file}: field {name!r} is {json.dumps(value)}; expected {expected}")
    if net["guidance_embeds"] != (meta.kind == "student"):
        raise UserError(
            f"{inner}: field 'guidance_embeds' is {json.dumps(net['guidance_embeds'])}, but cfgdistill.json says "
            f"this is a {meta.kind}"
        )


def check_scheduler(folder: Path, spec: dict):
    """`spec` is the process's own (`scheduler_fields`): DDPM's for VP, flow matching's for rectified flow."""
    where = folder / "scheduler" / "scheduler_config.json"
    check(where, read_json(where), spec, optional_fields=tuple(set(spec) - {"_class_name", "num_train_timesteps"}))
