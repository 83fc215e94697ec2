"""Guidance distillation, stage 1 of Meng et al. (CVPR 2023): one student pass learns a guidance rule's output."""

from dataclasses import replace

import torch
import torch.nn.functional as F

from ..guidance import predict_pair
from .base import Objective
from .trajectories import TeacherTrajectories, draw_negatives

# Named in a guidance-loss run's recipe, so that a run begun under another weighting is not resumed under this one.
GUIDANCE_WEIGHTING = "1 / (mean RMS + |s - 1| RMS(t)), mean 1 over t at each s"


class GuidanceDistillation(Objective):
    """Student(x_t, t, c, s) against rule(teacher cond, teacher uncond, s) at the same x_t, t, c; s ~ U[s_min, s_max].

    x_t is noised data, and with `trajectory_fraction` > 0 partly the teacher's own guided sampling states.
    The target is one batched teacher evaluation at the student's own x_t and t, not a sampling loop.
    """

    name = "student"

    def __init__(self, teacher, process, conditioning, config, rule, dataset=None):
        self.teacher, self.process, self.conditioning, self.config, self.rule = (
            teacher,
            process,
            conditioning,
            config,
            rule,
        )
        self.trajectories = TeacherTrajectories(teacher, process, conditioning, config, rule)
        self.guidance_rms = None
        if config.loss_space == "guidance":
            if dataset is None:
                raise ValueError("loss space 'guidance' measures the teacher on data: pass the dataset")
            if dataset.images is None:  # prompts alone: the teacher's own samples stand in for images
                x_0, cond = self.teacher_samples()
                self.guidance_rms = guidance_size_at(teacher, process, x_0, cond).sqrt()
            else:
                self.guidance_rms = guidance_size(teacher, process, conditioning, dataset).sqrt()

    def teacher_samples(self, rows: int = 64) -> tuple:
        """(x_0, cond) of `rows` conditional teacher samples from fixed noise: the same in every run and resume."""
        config = replace(self.config, p_uncond=0.0)
        paths = TeacherTrajectories(self.teacher, self.process, self.conditioning, config, self.rule)
        pool = paths.samples(rows, self.teacher.sample_shape, torch.Generator().manual_seed(0))
        return pool["x_0"][:rows], pool["cond"][:rows]

    def to(self, device):
        self.teacher.to(device)

    def draw(self, x_0, labels, generator) -> dict:
        """One row per image or path state, each at its own s.

        Without images (`x_0` None: a pipeline distilled from prompts) the rows come from the teacher alone.
        """
        if x_0 is None:
            return self.teacher_rows(labels.shape[0], generator)
        x_t, t, _ = self.process.noisy_batch(x_0, generator)
        cond = self.conditioning.draw(labels, generator, self.config.p_uncond)
        s = self.draw_s(x_0.shape[0], generator)
        unknown = torch.full_like(x_t, float("nan"))
        rows = {"x_t": x_t, "t": t, "cond": cond, "s": s, "pred_cond": unknown, "pred_uncond": unknown}
        if self.config.negatives:  # the rule's second branch: the null condition, or another class's
            rows["cond"], rows["negative"] = draw_negatives(self.conditioning, self.config, labels, cond, generator)
        n = round(self.config.trajectory_fraction * x_0.shape[0])
        if n > 0:
            paths, keep = self.trajectories.draw(n, x_0.shape[1:], generator), x_0.shape[0] - n
            rows = {key: merge(rows.get(key), value, keep) for key, value in paths.items()}
        return rows

    def teacher_rows(self, n: int, generator) -> dict:
        """`trajectory_fraction` of the rows are states on the teacher's guided paths; the rest are its finished
        samples (the paths' own, a pool of the newest) noised to a random t, each at a new s."""
        shape, on_paths = self.teacher.sample_shape, max(1, round(self.config.trajectory_fraction * n))
        rows = self.trajectories.draw(on_paths, shape, generator)
        if on_paths < n:
            pool = self.trajectories.samples(n - on_paths, shape, generator)
            pick = torch.randint(0, len(pool["x_0"]), (n - on_paths,), generator=generator)
            x_t, t, _ = self.process.noisy_batch(pool["x_0"][pick], generator)
            s = self.draw_s(len(pick), generator)
            unknown = torch.full_like(x_t, float("nan"))
            noised = {"x_t": x_t, "t": t, "cond": pool["cond"][pick], "s": s, "pred_cond": unknown}
            noised["pred_uncond"] = unknown
            rows = {key: torch.cat([noised[key], value.to(noised[key].dtype)]) for key, value in rows.items()}
        return rows

    def draw_s(self, n: int, generator) -> torch.Tensor:
        """s ~ U[s_min, s_max], but the first `s_one_share` of the rows (a random batch) at s = 1 exactly.

        At s = 1 every rule's target is the teacher's conditional prediction, which the zero-initialised
        student starts as; without anchor rows the shared weights drift toward the average guided target
        faster than the guidance embedding learns to tell s = 1 apart, and the student over-guides there
        (docs/distillation.md).
        """
        s_min, s_max = self.config.guidance_min, self.config.guidance_max
        s = s_min + (s_max - s_min) * torch.rand(n, generator=generator)
        s[: round(self.config.s_one_share * n)] = 1.0
        return s

    def teacher_outputs(self, rows: dict) -> tuple:
        """The teacher's (cond, uncond) at every row; noised-data rows get their teacher pass here, on this process."""
        pred_cond, pred_uncond = rows["pred_cond"], rows["pred_uncond"]
        missing = pred_cond.flatten(1).isnan().any(1)
        if missing.any():
            mask = missing.view(-1, *[1] * (pred_cond.ndim - 1))
            negative = rows["negative"][missing] if "negative" in rows else None
            pair = predict_pair(self.teacher, *(rows[key][missing] for key in ("x_t", "t", "cond")), negative)
            pred_cond, pred_uncond = (
                old.masked_scatter(mask, new.float().to(old.dtype)) for old, new in zip((pred_cond, pred_uncond), pair)
            )
        return pred_cond, pred_uncond

    def loss(self, student, rows: dict) -> torch.Tensor:
        pred_cond, pred_uncond = self.teacher_outputs(rows)
        x_t, t, cond, s = rows["x_t"], rows["t"], rows["cond"], rows["s"]
        if "target" in rows:  # a rule of the path: the teacher's paths computed it with each row's memory
            target = rows["target"].float()
        else:
            target = self.rule(pred_cond.float(), pred_uncond.float(), s, t=t, T=self.process.num_train_timesteps)
        extra = {"negative": rows["negative"]} if "negative" in rows else {}
        pred = student(x_t, t, cond, s, **extra).float()
        if self.config.loss_space == "prediction":
            return F.mse_loss(pred, target)
        return ((pred - target).square().flatten(1).mean(1) * self.row_weight(t, s)).mean()

    @torch.no_grad()
    def non_finite_cause(self, rows: dict) -> str | None:
        pred_cond, pred_uncond = self.teacher_outputs(rows)
        if not (torch.isfinite(pred_cond).all() and torch.isfinite(pred_uncond).all()):
            return "the teacher's own predictions are not finite: its weights are damaged"
        target = self.rule(pred_cond.float(), pred_uncond.float(), rows["s"])
        if not torch.isfinite(target).all() or target.abs().max() > 1e15:  # its square overflows float32
            low, high = self.config.guidance_min, self.config.guidance_max
            return f"the guided targets are not finite: the guidance range [{low:g}, {high:g}] is too large"
        return None

    def row_weight(self, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """The weight of a row's squared prediction error.

        "eps" turns it into the squared error of the eps it implies (VP with v: alpha_bar_t). In v space the
        noisiest rows, where the guidance term is largest, dominate the loss; in eps space the mid and low
        noise rows, where a class's fine detail is drawn, count as much.

        "guidance" divides instead by the size of the guidance correction the row asks for, |s − 1| times the
        RMS of the teacher's cond − uncond at t, plus a floor (that RMS's mean over t), then scales each s's
        weights to average 1 over t. In v space the guidance direction's mean square falls ~70× from t = 999
        to t = 500, and a v-space student under-guides the mid and low noise steps at high s; at s = 1, where
        there is no correction, the weight is flat, as in v space, because there the class is decided at high
        noise. Weights blind to s traded s = 1 against s = 5 (docs/fashion-experiments.md).
        """
        if self.guidance_rms is not None:
            rms = self.guidance_rms.to(t.device)
            inv = 1 / (rms.mean() + (s[:, None] - 1).abs() * rms[None, :])  # (rows, every t)
            return inv.gather(1, self.process.bin(t).to(t.device)[:, None]).squeeze(1) / inv.mean(1)
        return self.process.eps_weight(t)

    def state_dict(self) -> dict:
        pool = {f"pool.{key}": value for key, value in (self.trajectories.pool or {}).items()}
        return dict(self.trajectories.state or {}) | pool

    def load_state_dict(self, state: dict):
        paths = {key: value for key, value in state.items() if not key.startswith("pool.")}
        pool = {key[len("pool.") :]: value for key, value in state.items() if key.startswith("pool.")}
        self.trajectories.state, self.trajectories.pool = paths or None, pool or None


def merge(noised, paths: torch.Tensor, keep: int) -> torch.Tensor:
    """The first `keep` noised-data rows, then the path rows; a column only paths have (a path rule's target)
    comes with no noised rows (`keep` is 0)."""
    return paths if noised is None else torch.cat([noised[:keep], paths.to(noised.dtype)])


@torch.no_grad()
def guidance_size(teacher, process, conditioning, dataset, points: int = 16, rows: int = 64) -> torch.Tensor:
    """The teacher's mean squared |cond − uncond| at every integer t (a flow model's t bins, `process.bin`).

    Measured on `rows` images spread evenly through the data (a folder lists its classes in turn) at
    `points` evenly spaced t with fixed noise, and interpolated in log space, so it costs about `points`
    teacher batches and every process (and a resume) gets the same.
    """
    n = min(rows, len(dataset))
    index = torch.linspace(0, len(dataset) - 1, n).round().long()
    x_0, cond = dataset.images[index].float(), conditioning.for_classes(dataset.labels[index])
    return guidance_size_at(teacher, process, x_0, cond, points)


@torch.no_grad()
def guidance_size_at(teacher, process, x_0: torch.Tensor, cond: torch.Tensor, points: int = 16) -> torch.Tensor:
    """`guidance_size` on given rows (x_0, their conditions)."""
    n, generator = len(x_0), torch.Generator().manual_seed(0)
    num_t = process.num_train_timesteps
    grid = torch.linspace(0, num_t - 1, points).round().long()
    log_size = []
    for t in grid:
        x_t = process.add_noise(x_0, torch.randn(x_0.shape, generator=generator), t.expand(n))
        pred_cond, pred_uncond = predict_pair(teacher, x_t, t, cond)
        log_size.append((pred_cond - pred_uncond).float().square().mean().clamp_min(1e-12).log())
    log_size = torch.stack(log_size)
    at = torch.arange(num_t, dtype=torch.float32) * (points - 1) / (num_t - 1)
    low = at.floor().long().clamp(max=points - 2)
    return torch.lerp(log_size[low], log_size[low + 1], at - low).exp()
