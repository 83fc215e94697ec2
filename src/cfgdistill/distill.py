"""Guidance distillation, stage 1 of Meng et al. (CVPR 2023): one student pass learns the teacher's CFG output."""

import hashlib
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from .checkpoint import Checkpoint
from .conditioning import make_conditioning
from .data import ImageDataset, load_dataset
from .diffusion import add_noise, ddim_step, noisy_batch
from .errors import UserError
from .guidance import cfg, paired_predictions
from .loop import LoopConfig, Objective, RunOptions, fit, positive
from .models import make_student
from .sampling import make_sampler


LOSS_SPACES = ("prediction", "eps", "guidance")
# Named in a guidance-loss run's recipe, so that a run begun under another weighting is not resumed under this one.
GUIDANCE_WEIGHTING = "1 / (mean RMS + |s - 1| RMS(t)), mean 1 over t at each s"


@dataclass
class DistillConfig(LoopConfig):
    steps: int = 1500
    warmup_steps: int = 50
    guidance_min: float = 1.0
    guidance_max: float = 6.0
    trajectory_fraction: float = 0.0  # share of each batch taken from the teacher's own guided DDIM paths
    trajectory_steps: int = 20
    s_draws: int = 1  # guidance scales per image or path state, all from one teacher pass (see DistillObjective.draw)
    loss_space: str = "prediction"  # "eps" or "guidance": rows weighted by t (and s) (see DistillObjective.row_weight)

    def validate(self):
        super().validate()
        for name in ("guidance_min", "guidance_max"):
            value = getattr(self, name)
            if not (value == value and abs(value) != float("inf")):
                raise UserError(f"{name.replace('_', '-')} must be a finite number, got {value}")
        if self.guidance_min > self.guidance_max:
            raise UserError(f"guidance-min ({self.guidance_min}) must not exceed guidance-max ({self.guidance_max})")
        if not 0 <= self.trajectory_fraction <= 1:
            raise UserError(f"trajectory-fraction must be in [0, 1], got {self.trajectory_fraction}")
        positive(trajectory_steps=self.trajectory_steps, s_draws=self.s_draws)
        if self.loss_space not in LOSS_SPACES:
            raise UserError(f"loss-space must be one of {', '.join(LOSS_SPACES)}, got {self.loss_space!r}")


class TeacherTrajectories:
    """Rows on the teacher's guided DDIM paths, each advanced one sampler step per training step.

    Noised data q(x_t | x_0) misses the states that guided sampling visits at high s; a student trained
    only there drifts off them. Advancing a row needs the teacher's CFG output at it, which is that row's
    distillation target anyway, so the paths cost no extra teacher passes.
    """

    def __init__(self, teacher, noise_schedule, conditioning, config: DistillConfig):
        self.teacher, self.conditioning, self.config, self.schedule = teacher, conditioning, config, noise_schedule
        sampler = make_sampler("ddim", noise_schedule)
        sampler.set_timesteps(config.trajectory_steps)
        self.timesteps = sampler.timesteps.long()  # descending, as sampling runs them
        alpha_bar = noise_schedule.alphas_cumprod
        self.alpha_bar = torch.cat([alpha_bar[self.timesteps], torch.tensor([float(sampler.final_alpha_cumprod)])])
        self.state = None  # {"x_t", "k" (index into timesteps), "cond", "s"}

    def fresh(self, n: int, image_shape: tuple, generator: torch.Generator) -> dict:
        """New paths from pure noise, with a random class (or null) condition and s ~ U[s_min, s_max]."""
        labels = torch.randint(0, self.teacher.config.num_classes, (n,), generator=generator)
        s_min, s_max = self.config.guidance_min, self.config.guidance_max
        return {"x_t": torch.randn((n, *image_shape), generator=generator), "k": torch.zeros(n, dtype=torch.long),
                "cond": self.conditioning.draw(labels, generator), "s": s_min + (s_max - s_min) * torch.rand(n, generator=generator)}

    def pair(self) -> tuple:
        """The teacher's (cond, uncond) outputs at every path state."""
        return teacher_pair(self.teacher, self.state["x_t"], self.timesteps[self.state["k"]], self.state["cond"])

    def guided(self) -> torch.Tensor:
        pred_cond, pred_uncond = self.pair()
        return cfg(pred_uncond, pred_cond, self.state["s"])

    def advance(self, pred: torch.Tensor, moving: torch.Tensor, generator: torch.Generator):
        """One DDIM step for the `moving` rows; a path that reached t = 0 starts again from noise."""
        state, k = self.state, self.state["k"]
        stepped = ddim_step(self.schedule, pred, state["x_t"], self.alpha_bar[k], self.alpha_bar[k + 1])
        state["x_t"] = torch.where(moving.view(-1, *[1] * (pred.ndim - 1)), stepped, state["x_t"])
        state["k"] = k + moving.long()
        done = state["k"] == len(self.timesteps)
        if done.any():
            new = self.fresh(int(done.sum()), pred.shape[1:], generator)
            for key, value in new.items():
                state[key][done] = value

    def start(self, n: int, image_shape: tuple, generator: torch.Generator):
        """n paths at staggered steps, so one batch does not hold a single t."""
        self.state = self.fresh(n, image_shape, generator)
        stop = torch.randint(0, len(self.timesteps), (n,), generator=generator)
        for _ in range(int(stop.max())):
            self.advance(self.guided(), self.state["k"] < stop, generator)

    def draw(self, n: int, image_shape: tuple, generator: torch.Generator) -> dict:
        """n rows with the teacher's pair at them (the same n every step); the paths then move one step on."""
        if self.state is None:
            self.start(n, image_shape, generator)
        pred_cond, pred_uncond = self.pair()
        rows = {"x_t": self.state["x_t"].clone(), "t": self.timesteps[self.state["k"]], "cond": self.state["cond"].clone(),
                "s": self.state["s"].clone(), "pred_cond": pred_cond, "pred_uncond": pred_uncond}
        self.advance(cfg(pred_uncond, pred_cond, rows["s"]), torch.ones(n, dtype=torch.bool), generator)
        return rows


class DistillObjective(Objective):
    """Student(x_t, t, c, s) against the teacher's batched CFG output at the same x_t, t, c and s ~ U[s_min, s_max].

    x_t is noised data, and with `trajectory_fraction` > 0 partly the teacher's own guided sampling states.
    """

    name = "student"

    def __init__(self, teacher, noise_schedule, conditioning, config: DistillConfig, dataset: ImageDataset | None = None):
        super().__init__(noise_schedule, conditioning, teacher.config.num_classes)
        self.teacher, self.config = teacher, config
        self.trajectories = TeacherTrajectories(teacher, noise_schedule, conditioning, config)
        self.guidance_rms = None
        if config.loss_space == "guidance":
            if dataset is None:
                raise ValueError("loss space 'guidance' measures the teacher on data: pass the dataset")
            self.guidance_rms = guidance_size(teacher, noise_schedule, conditioning, dataset).sqrt()

    def to(self, device):
        self.teacher.to(device)

    def draw(self, x_0, labels, generator) -> dict:
        """One row per image or path state; its `s` column holds the `s_draws` scales the student learns it at."""
        x_t, t, _ = noisy_batch(self.noise_schedule, x_0, generator)
        cond = self.conditioning.draw(labels, generator)
        s_min, s_max = self.config.guidance_min, self.config.guidance_max
        s = s_min + (s_max - s_min) * torch.rand(x_0.shape[0], generator=generator)
        unknown = torch.full_like(x_t, float("nan"))
        rows = {"x_t": x_t, "t": t, "cond": cond, "s": s, "pred_cond": unknown, "pred_uncond": unknown}
        n = round(self.config.trajectory_fraction * x_0.shape[0])
        if n > 0:
            paths, keep = self.trajectories.draw(n, x_0.shape[1:], generator), x_0.shape[0] - n
            rows = {key: torch.cat([value[:keep], paths[key].to(value.dtype)]) for key, value in rows.items()}
        rows["s"] = self.spread(rows["s"])
        return rows

    def spread(self, s: torch.Tensor) -> torch.Tensor:
        """Each row's s, then s_draws − 1 more evenly spaced around [s_min, s_max] from it (a shifted lattice).

        The teacher's cond and uncond outputs give its guided target at every s for the price of one, so
        extra scales per row cost only student passes, and evenly spaced ones cover the range better than
        independent draws. A path's own s comes first, so the path keeps the scale it is sampled at.
        """
        k = torch.arange(1, self.config.s_draws, dtype=s.dtype)
        s_min, s_max = self.config.guidance_min, self.config.guidance_max
        if s_max == s_min:
            return s[:, None].expand(-1, self.config.s_draws).clone()
        u = (s[:, None] - s_min) / (s_max - s_min) + k / self.config.s_draws
        return torch.cat([s[:, None], s_min + (s_max - s_min) * (u - u.floor())], dim=1)

    def loss(self, student, rows: dict) -> torch.Tensor:
        pred_cond, pred_uncond = rows["pred_cond"], rows["pred_uncond"]
        missing = pred_cond.flatten(1).isnan().any(1)  # noised-data rows: their teacher pass happens here, on this process
        if missing.any():
            mask = missing.view(-1, *[1] * (pred_cond.ndim - 1))
            pair = teacher_pair(self.teacher, *(rows[key][missing] for key in ("x_t", "t", "cond")))
            pred_cond, pred_uncond = (old.masked_scatter(mask, new.to(old.dtype)) for old, new in zip((pred_cond, pred_uncond), pair))
        draws, s = rows["s"].shape[1], rows["s"].flatten()  # row i at its scales: rows i·draws ... (i + 1)·draws − 1
        x_t, t, cond, pred_cond, pred_uncond = (
            value.repeat_interleave(draws, dim=0) for value in (rows["x_t"], rows["t"], rows["cond"], pred_cond, pred_uncond))
        target = cfg(pred_uncond.float(), pred_cond.float(), s)
        pred = student(x_t, t, cond, s).float()
        if self.config.loss_space == "prediction":
            return F.mse_loss(pred, target)
        return ((pred - target).square().flatten(1).mean(1) * self.row_weight(t, s)).mean()

    def row_weight(self, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """The weight that turns a row's squared prediction error into its squared eps error.

        For v = sqrt(alpha_bar_t)·eps − sqrt(1 − alpha_bar_t)·x_0, eps = sqrt(alpha_bar_t)·v + sqrt(1 − alpha_bar_t)·x_t,
        so an error in v is sqrt(alpha_bar_t) times as large in eps. In v space the noisiest rows, where the
        guidance term is largest, dominate the loss; in eps space the mid and low noise rows, where a class's
        fine detail is drawn, count as much.

        "guidance" divides instead by the size of the guidance correction the row asks for, |s − 1| times the
        RMS of the teacher's cond − uncond at t, plus a floor (that RMS's mean over t), then scales each s's
        weights to average 1 over t. In v space the guidance direction's mean square falls ~70× from t = 999
        to t = 500, and a v-space student under-guides the mid and low noise steps at high s; at s = 1, where
        there is no correction, the weight is flat, as in v space, because there the class is decided at high
        noise. Weights blind to s traded s = 1 against s = 5 (README, Fashion-MNIST).
        """
        if self.guidance_rms is not None:
            rms = self.guidance_rms.to(t.device)
            inv = 1 / (rms.mean() + (s[:, None] - 1).abs() * rms[None, :])  # (rows, every t)
            return inv.gather(1, t[:, None]).squeeze(1) / inv.mean(1)
        if self.noise_schedule.config.prediction_type == "epsilon":
            return torch.ones(t.shape, device=t.device)
        return self.noise_schedule.alphas_cumprod.to(t.device)[t]

    def state_dict(self) -> dict:
        return dict(self.trajectories.state or {})

    def load_state_dict(self, state: dict):
        self.trajectories.state = dict(state) if state else None


@torch.no_grad()
def guidance_size(teacher, noise_schedule, conditioning, dataset: ImageDataset, points: int = 16, rows: int = 64) -> torch.Tensor:
    """The teacher's mean squared |cond − uncond| at every training t.

    Measured on `rows` images spread evenly through the data (a folder lists its classes in turn) at
    `points` evenly spaced t with fixed noise, and interpolated in log space, so it costs about `points`
    teacher batches and every process (and a resume) gets the same.
    """
    n = min(rows, len(dataset))
    index = torch.linspace(0, len(dataset) - 1, n).round().long()
    x_0, labels = dataset.images[index].float(), dataset.labels[index]
    cond = conditioning.for_classes(labels)
    null = teacher.null_condition(cond)
    generator = torch.Generator().manual_seed(0)
    num_t = noise_schedule.config.num_train_timesteps
    grid = torch.linspace(0, num_t - 1, points).round().long()
    log_size = []
    for t in grid:
        eps = torch.randn(x_0.shape, generator=generator)
        x_t = add_noise(noise_schedule, x_0, eps, t.expand(n))
        pred_cond, pred_uncond = paired_predictions(teacher, x_t, t, cond, null)
        log_size.append((pred_cond - pred_uncond).float().square().mean().clamp_min(1e-12).log())
    log_size = torch.stack(log_size)
    at = torch.arange(num_t, dtype=torch.float32) * (points - 1) / (num_t - 1)
    low = at.floor().long().clamp(max=points - 2)
    return torch.lerp(log_size[low], log_size[low + 1], at - low).exp()


@torch.no_grad()
def teacher_pair(teacher, x_t, t, cond) -> tuple:
    """The teacher's (cond, uncond) outputs, computed where the teacher lives and returned where x_t is."""
    here, device = x_t.device, next(teacher.parameters()).device
    x_t, t, cond = (value.to(device) for value in (x_t, t, cond))
    return tuple(pred.float().to(here) for pred in paired_predictions(teacher, x_t, t, cond, teacher.null_condition(cond)))


def fingerprint(model) -> str:
    """A short hash of a network's weights, so a resume cannot silently switch teachers."""
    digest = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def distill(teacher: Checkpoint, config: DistillConfig, dataset: ImageDataset | None = None, run: RunOptions | None = None) -> Checkpoint:
    """Train a student, initialised from the teacher, on targets cfg(teacher(x_t, t), s).

    The target is one batched teacher evaluation at the student's own x_t and t, not a sampling loop.
    """
    config.validate()
    if teacher.kind != "teacher":
        raise UserError("distillation needs a teacher checkpoint, but this one is a student")
    data = teacher.meta["data"]
    dataset = dataset or load_dataset(data["name"], "train", image_shape=tuple(data["image_shape"]))
    meta = teacher.meta["conditioning"]
    conditioning = make_conditioning(meta["type"], data["name"], meta["class_names"], config.p_uncond, meta)
    teacher_model = teacher.model.eval().requires_grad_(False)
    torch.manual_seed(config.seed)  # the guidance embedding's first layers are random: same seed, same student
    student = make_student(teacher_model, (config.guidance_min, config.guidance_max))
    objective = DistillObjective(teacher_model, teacher.noise_schedule, conditioning, config, dataset)
    identity = {"teacher": fingerprint(teacher_model), "data_images": len(dataset)}
    if config.loss_space == "guidance":
        identity["guidance_weighting"] = GUIDANCE_WEIGHTING
    fit(student, objective, dataset, config, run, identity=identity)
    teacher_model.cpu()
    return Checkpoint.create(
        student.cpu(),
        teacher.noise_schedule,
        kind="student",
        dataset=dataset,
        training={"teacher": teacher.meta.get("training"), "distill": asdict(config)},
        conditioning=conditioning,
    )
