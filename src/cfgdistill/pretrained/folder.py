"""A pipeline folder checked before anything in it is loaded.

`model_index.json` must name classes of diffusers or transformers (never code from the folder: no custom
module, no `trust_remote_code`); each component's folder must exist, hold a readable config whose fields fit
its class, and, for a network, safetensors weights (safetensors runs no code at load; a pickled `.bin` may).
The scheduler must suit the network's objective. The one line names the file and what is wrong with it.
"""

import importlib
import inspect
import json
import math
import types
import typing
from pathlib import Path

from ..errors import UserError

INDEX = "model_index.json"
LIBRARIES = ("diffusers", "transformers")
CONFIGS = ("config.json", "scheduler_config.json", "tokenizer_config.json", "preprocessor_config.json")
PICKLES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def check_folder(folder: Path, index: dict, family: str):
    """Every component of the pipeline at `folder` (its parsed `index`), in order, before any is loaded."""
    for name, entry in components(index).items():
        cls = component_class(folder, name, entry)
        if cls is not None:
            check_component(folder / name, name, cls)
    scheduler = (index.get("scheduler") or [None, None])[-1]
    if scheduler is None:
        raise UserError(f"{folder / INDEX} names no scheduler; the pipeline cannot sample without one")
    size = read_config(folder / "unet" / "config.json").get("sample_size") if family != "flux" else 1
    if not (isinstance(size, int) and not isinstance(size, bool) and size > 0):  # the stock call's default size
        raise UserError(
            f"{folder / 'unet' / 'config.json'}: field 'sample_size' is {json.dumps(size)}; expected a side > 0"
        )
    if str(scheduler).startswith("FlowMatch") != (family == "flux"):
        wants = "a flow-matching scheduler" if family == "flux" else "a DDPM-family scheduler (eps or v)"
        raise UserError(f"{folder / INDEX}: the scheduler {scheduler} does not suit its network, which needs {wants}")


def components(index: dict) -> dict:
    """The index's component entries: the pipeline class's module arguments, and any [library, class] pair;
    its other keys are the pipeline's own settings (`requires_safety_checker`)."""
    parameters = inspect.signature(getattr(importlib.import_module("diffusers"), index["_class_name"])).parameters
    modules = {n for n, p in parameters.items() if p.default in (inspect.Parameter.empty, None) and n != "kwargs"}
    return {k: v for k, v in index.items() if not k.startswith("_") and (k in modules or isinstance(v, list))}


def component_class(folder: Path, name: str, entry):
    """The class a component entry names, or None for a component left out ([null, null])."""
    where = folder / INDEX
    if entry == [None, None]:
        return None
    if not (isinstance(entry, list) and len(entry) == 2 and all(isinstance(part, str) for part in entry)):
        raise UserError(
            f"{where}: component {name!r} is {json.dumps(entry)}; expected [library, class name] (or [null, null])"
        )
    library, class_name = entry
    if library not in LIBRARIES:
        raise UserError(
            f"{where}: component {name!r} names {library}.{class_name}; cfgdistill loads classes of diffusers and "
            "transformers only, never code from a model folder"
        )
    cls = getattr(importlib.import_module(library), class_name, None)
    if not isinstance(cls, type):
        raise UserError(f"{where}: component {name!r} names {library}.{class_name}, which {library} does not have")
    return cls


def check_component(path: Path, name: str, cls: type):
    """The component's folder: present, readable, with its config and (for a network) safetensors weights."""
    if not path.is_dir():
        state = "is a file" if path.is_file() else "is missing"
        raise UserError(f"{path} {state}; model_index.json names component {name!r}, which needs a folder")
    try:
        files = {entry.name: entry for entry in path.iterdir()}
        for entry in files.values():
            entry.stat()  # a symlink loop or a dangling link fails here
    except OSError as error:
        raise UserError(f"cannot read {getattr(error, 'filename', None) or path}: {error.strerror}") from None
    config_name = next((c for c in CONFIGS if c in files), None)
    if config_name is None:
        raise UserError(f"{path} has no config file ({', '.join(CONFIGS[:2])}) for component {name!r}")
    config = read_config(path / config_name)
    if is_network(cls):
        check_weights(path, files)
        check_fields(path / config_name, config, getattr(cls, "config_class", None) or cls)
    elif "Scheduler" in cls.__name__:
        check_fields(path / config_name, config, cls)


def read_config(path: Path) -> dict:
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"{path} cannot be read: {str(error).splitlines()[0]}") from None
    if not isinstance(config, dict):
        raise UserError(f"{path} is not a JSON object")
    return config


def is_network(cls: type) -> bool:
    return any(base.__name__ in ("ModelMixin", "PreTrainedModel") for base in cls.__mro__)


def check_weights(path: Path, files: dict):
    if any(n.endswith((".safetensors", ".safetensors.index.json")) for n in files):
        return
    pickled = sorted(n for n in files if n.endswith(PICKLES))
    if pickled:
        raise UserError(
            f"{path} holds its weights only as {pickled[0]} (a pickle, which can run code when loaded); convert "
            "them once with diffusers: from_pretrained(...) then save_pretrained(..., safe_serialization=True)"
        )
    raise UserError(f"{path} holds no weights (*.safetensors)")


def check_fields(where: Path, config: dict, cls: type):
    """Each field the class takes, against its annotation: null only where allowed, and of the right kind."""
    try:
        parameters = inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):
        return
    for key, value in config.items():
        parameter = parameters.get(key)
        if key.startswith("_") or parameter is None or parameter.annotation is inspect.Parameter.empty:
            continue
        if not fits(value, parameter.annotation, parameter.default):
            raise UserError(
                f"{where}: field {key!r} is {json.dumps(value)[:60]}; {cls.__name__} expects {describe(parameter)}"
            )


def fits(value, annotation, default) -> bool:
    """Whether a JSON value can be `annotation` (its kind only: a value the class cannot be built with fails
    at load, and weights that do not fit the config fail `check_fit`); an unreadable annotation lets it by."""
    if isinstance(annotation, str) or annotation is typing.Any:
        return True
    origin, arguments = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(fits(value, a, default) for a in arguments)
    if origin is typing.Literal:
        return any(value == a and type(value) is type(a) for a in arguments)
    if annotation is type(None) or value is None:
        return value is None and (annotation is type(None) or default is None)
    if annotation in (bool, int, float):
        return number_fits(value, annotation)
    if annotation is str:
        return isinstance(value, str)
    if origin in (tuple, list) or annotation in (tuple, list):
        inner = [a for a in arguments if a is not Ellipsis][:1]
        return isinstance(value, list) and all(fits(v, inner[0], 0) for v in value if inner)
    if origin is dict or annotation is dict:
        return isinstance(value, dict)
    return True


def number_fits(value, annotation) -> bool:
    if annotation is bool or isinstance(value, bool):
        return annotation is bool and isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int)
    return isinstance(value, (int, float)) and math.isfinite(value)


def describe(parameter) -> str:
    text = str(parameter.annotation).replace("typing.", "").replace("<class '", "").replace("'>", "")
    return f"{text} (default {json.dumps(parameter.default, default=str)})"


def check_fit(folder: Path, pipe):
    """Each diffusers network of a loaded pipeline holds exactly the weights its files hold, shape for shape:
    diffusers leaves a weight its config does not match random, and only warns (our checkpoints refuse it)."""
    from safetensors import safe_open

    for name, module in pipe.components.items():
        if not (module is not None and is_network(type(module)) and hasattr(module, "register_to_config")):
            continue
        stored = {}
        for path in sorted((folder / name).glob("*.safetensors")):
            with safe_open(path, "pt") as weights:
                stored |= {key: tuple(weights.get_slice(key).get_shape()) for key in weights.keys()}
        built = {key: tuple(value.shape) for key, value in module.state_dict().items()}
        misfits = sorted(
            k for k in set(stored) ^ set(built) | {k for k in stored if built.get(k, stored[k]) != stored[k]}
        )
        if misfits:
            raise UserError(
                f"the weights in {folder / name} do not fit its config.json ({', '.join(misfits[:3])}); the folder "
                "was edited or written by another version"
            )
