"""Checkpoints: a folder in diffusers' save_pretrained layout plus `cfgdistill.json`, read as typed metadata.

Loading reads JSON and safetensors only, so a checkpoint from a stranger cannot run code.
"""

import json
import shutil
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from diffusers.utils import logging as diffusers_logging

from .conditioning import ClassConditioning, conditioning_from_meta
from .errors import UserError
from .io import atomic, check_output_dir, write_text
from .networks import CLASSES, Denoiser
from .processes import PROCESSES
from .schema import check_meta, check_network, check_scheduler, read_json

META_FILE = "cfgdistill.json"
WEIGHTS = "diffusion_pytorch_model.safetensors"
PARTS = ("denoiser", "transformer")  # every network folder a checkpoint may hold
FORMAT_VERSION = 1
KINDS = ("teacher", "student")
CONVENTION = "s: pred = uncond + s*(cond - uncond); s=0 unconditional, s=1 conditional (w = s - 1 in Meng et al.)"


@dataclass
class DataMeta:
    name: str
    image_shape: list
    train_images: int


@dataclass
class GuidanceMeta:
    convention: str = CONVENTION
    trained_range: list | None = None  # a student's distilled s range
    rule: str = "cfg"  # the guidance rule a student reproduces (a teacher is guided by any)
    options: dict | None = None  # that rule's options
    guide_model: str | None = None  # autoguidance: the weaker teacher the student learnt with


@dataclass
class Meta:
    """What `cfgdistill.json` holds; `conditioning` is the conditioning object's own record."""

    kind: str
    prediction_type: str
    data: DataMeta
    conditioning: dict
    training: dict
    guidance: GuidanceMeta = field(default_factory=GuidanceMeta)
    process: str = "vp"
    sampling: dict | None = None  # a few-step student's own grid: {"grid": [t, ...]}, used unless told otherwise
    format: str = "cfgdistill"
    version: int = FORMAT_VERSION

    @classmethod
    def from_dict(cls, raw: dict, where) -> "Meta":
        if not isinstance(raw, dict) or raw.get("format") != "cfgdistill":
            raise UserError(f"{where} does not describe a cfgdistill checkpoint")
        if raw.get("version") != FORMAT_VERSION:
            raise UserError(
                f"{where.parent} has checkpoint format version {raw.get('version')}; "
                f"this cfgdistill reads {FORMAT_VERSION}"
            )
        if raw.get("kind") not in KINDS:
            raise UserError(f"{where}: kind must be one of {', '.join(KINDS)}, got {raw.get('kind')!r}")
        check_meta(where, raw)
        try:
            known = {f.name for f in fields(cls)}
            meta = cls(**{k: v for k, v in raw.items() if k in known})
            meta.data, meta.guidance = known_fields(DataMeta, meta.data), known_fields(GuidanceMeta, meta.guidance)
        except TypeError as error:
            raise UserError(f"{where}: {error}") from None
        return meta


def known_fields(cls, raw: dict):
    """A metadata dataclass from its JSON object; fields this version does not know are ignored."""
    return cls(**{f.name: raw[f.name] for f in fields(cls) if f.name in raw})


@dataclass
class Checkpoint:
    model: "Denoiser | FluxDenoiser"  # noqa: F821 (flux.py loads on first use)
    process: object  # a forward process (processes/)
    conditioning: object  # ClassConditioning or TextConditioning
    meta: Meta
    path: Path | None = None  # the folder it was loaded from or last saved to

    @classmethod
    def create(cls, model, process, *, kind, dataset, training, conditioning=None, rule="cfg", options=None):
        """`conditioning` defaults to the dataset's class labels; `rule` and its `options`: what a student learnt."""
        conditioning = conditioning or ClassConditioning(dataset.class_names)
        guidance = GuidanceMeta(trained_range=model.config.guidance_range, rule=rule, options=options)
        data = DataMeta(dataset.name, list(dataset.image_shape), len(dataset))
        meta = Meta(kind, process.prediction_type, data, conditioning.to_meta(), training, guidance, process.name)
        return cls(model, process, conditioning, meta)

    @property
    def kind(self) -> str:
        return self.meta.kind

    @property
    def grid(self) -> list | None:
        """A few-step student's own sampling grid (timesteps, descending); None for any other model."""
        return (self.meta.sampling or {}).get("grid")

    @property
    def start_steps(self) -> int | None:
        """A few-step student's round-0 step count, where its CFG teacher is measured; None for other models."""
        if not self.grid:
            return None
        return len(self.grid) * 2 ** (self.meta.training["progressive"]["round"] + 1)

    @property
    def num_classes(self) -> int:
        return self.conditioning.num_classes

    @property
    def class_names(self) -> list:
        return self.conditioning.class_names

    def save(self, path, overwrite: bool = False) -> Path:
        """Replace the network's folders, the scheduler and cfgdistill.json, the last one last.

        A folder is a checkpoint only once cfgdistill.json is there, so a crash never leaves a loadable half.
        Other entries of the folder (a run's checkpoints/ and logs/) are kept.
        """
        path = Path(path)
        check_output_dir(path, overwrite)
        path.mkdir(parents=True, exist_ok=True)
        (path / META_FILE).unlink(missing_ok=True)
        parts = self.model.parts
        for name in PARTS:
            if name not in parts and (path / name).is_dir():
                shutil.rmtree(path / name)  # another network's folder, from an overwritten run
        for name, part in parts.items():
            with atomic(path / name) as tmp:
                part.save_pretrained(tmp)
        with atomic(path / "scheduler") as tmp:
            self.process.save(tmp)
        write_text(path / META_FILE, json.dumps(asdict(self.meta), indent=2) + "\n")
        self.path = path
        return path


def read_meta(path: Path) -> Meta:
    if not path.is_dir():
        raise UserError(f"checkpoint folder {path} does not exist")
    meta_path = path / META_FILE
    if not meta_path.is_file():
        raise UserError(f"{path} is not a cfgdistill checkpoint (no {META_FILE})")
    return Meta.from_dict(read_json(meta_path), meta_path)


def load_part(cls, folder: Path):
    """One diffusers folder of a network, from safetensors only; weights that do not fit are refused in one line."""
    if not (folder / WEIGHTS).is_file():
        raise UserError(f"cannot load the network in {folder.parent}: {folder.name}/{WEIGHTS} is missing")
    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # misfitting weights are refused below in one line, not warned about
    try:
        model, info = cls.from_pretrained(folder, use_safetensors=True, output_loading_info=True)
    except Exception as error:  # diffusers raises many types for missing or damaged files
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"cannot load the network in {folder.parent}: {first_line}") from None
    finally:
        diffusers_logging.set_verbosity(verbosity)
    misfits = sorted(
        set(info["missing_keys"]) | set(info["unexpected_keys"]) | {str(m[0]) for m in info["mismatched_keys"]}
    )
    if misfits:  # diffusers would leave these weights random (or on the meta device) and only warn
        raise UserError(
            f"the weights in {folder.parent} do not fit this version's network ({', '.join(misfits[:4])}); "
            "it was written by another cfgdistill version: retrain it"
        )
    return model


def load_network(path: Path, class_name: str):
    """The network of a checkpoint folder, from the class its `denoiser/config.json` names."""
    if CLASSES[class_name] == "FluxDenoiser":
        from diffusers import FluxTransformer2DModel

        from .networks.flux import FluxConditioner, FluxDenoiser

        model = FluxDenoiser(
            load_part(FluxConditioner, path / "denoiser"), load_part(FluxTransformer2DModel, path / "transformer")
        )
    else:
        model = load_part(Denoiser, path / "denoiser")
    return model.eval()


def load_process(path: Path, process_class):
    try:
        return process_class.load(path / "scheduler")
    except Exception as error:  # as for the network: a damaged scheduler folder is one line
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"cannot load the scheduler in {path}: {first_line}") from None


RETIRED = {  # network fields of options measured as losing and removed: off, they load; on, they are refused
    "guidance_times_w": "distill --guidance-gate w",
    "negative_joint": "distill --negative-input joint",
}


def refuse_retired(where: Path, config: dict):
    """A network built with a retired option cannot be built any more: one line that says which."""
    for name, option in RETIRED.items():
        if config.get(name):
            raise UserError(f"{where}: this student was distilled with {option}, which cfgdistill no longer has")


def load(path) -> Checkpoint:
    """Load a teacher or a student; any problem becomes a one-line UserError."""
    path = Path(path)
    meta = read_meta(path)
    if meta.process not in PROCESSES:
        raise UserError(f"{path}: unknown forward process {meta.process!r}")
    network = check_network(path, meta)
    refuse_retired(path / "denoiser" / "config.json", network)
    check_scheduler(path, PROCESSES[meta.process].scheduler_fields)
    model, process = load_network(path, network["_class_name"]), load_process(path, PROCESSES[meta.process])
    if model.takes_guidance != (meta.kind == "student"):
        raise UserError(f"{path}: the network does not match its kind {meta.kind!r}")
    if process.prediction_type != meta.prediction_type:
        raise UserError(f"{path}: the scheduler's prediction type does not match {META_FILE}")
    try:
        conditioning = conditioning_from_meta(meta.conditioning)
    except (KeyError, TypeError) as error:
        raise UserError(f"{path / META_FILE}: conditioning lacks {error}") from None
    return Checkpoint(model, process, conditioning, meta, path)
