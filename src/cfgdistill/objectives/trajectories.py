"""States on the teacher's own guided sampling paths, as distillation inputs."""

import torch

from ..guidance import on_path, predict_pair

POOL = 1024  # the newest finished teacher samples kept, for rows of noised teacher samples


def draw_negatives(conditioning, config, labels: torch.Tensor, cond: torch.Tensor, generator) -> tuple:
    """(cond, negative) for rows of `labels`: the negative is a random class's prompt (or label) with probability
    `config.negatives`, else the null one."""
    n, k = len(labels), conditioning.num_classes
    negative = conditioning.draw(torch.randint(0, k, (n,), generator=generator), generator, 1 - config.negatives)
    return cond, negative


class TeacherTrajectories:
    """Rows on the teacher's guided deterministic paths, each advanced one sampler step per training step.

    Noised data q(x_t | x_0) misses the states that guided sampling visits at high s; a student trained
    only there drifts off them. Advancing a row needs the teacher's guided output at it, which is that
    row's distillation target anyway, so the paths cost no extra teacher passes.
    """

    def __init__(self, teacher, process, conditioning, config, rule):
        self.teacher, self.conditioning, self.config, self.rule = teacher, conditioning, config, rule
        self.path, self.T = process.deterministic_path(config.trajectory_steps), process.num_train_timesteps
        self.timesteps = self.path.timesteps
        self.state = None  # {"x_t", "k" (index into timesteps), "cond", "s"}
        self.pool = None  # {"x_0", "cond"}: samples of paths that reached t = 0, newest last, once asked for

    def fresh(self, n: int, image_shape: tuple, generator: torch.Generator) -> dict:
        """New paths from pure noise, with a random class (or null) condition and s ~ U[s_min, s_max]."""
        labels = torch.randint(0, self.conditioning.num_classes, (n,), generator=generator)
        s_min, s_max = self.config.guidance_min, self.config.guidance_max
        paths = {
            "x_t": torch.randn((n, *image_shape), generator=generator),
            "k": torch.zeros(n, dtype=torch.long),
            "cond": self.conditioning.draw(labels, generator, self.config.p_uncond),
            "s": s_min + (s_max - s_min) * torch.rand(n, generator=generator),
        }
        if self.config.negatives:
            paths["cond"], paths["negative"] = draw_negatives(
                self.conditioning, self.config, labels, paths["cond"], generator
            )
        if getattr(self.rule, "keywords", {}).get("momentum"):  # APG's running sum, one per path
            paths["momentum"] = torch.zeros_like(paths["x_t"])
        return paths

    def pair(self) -> tuple:
        """The teacher's (cond, uncond) outputs at every path state, in float32."""
        t, state = self.timesteps[self.state["k"]], self.state
        pair = predict_pair(self.teacher, state["x_t"], t, state["cond"], state.get("negative"))
        return tuple(pred.float() for pred in pair)

    def guide(self, pred_cond, pred_uncond, moving: torch.Tensor) -> torch.Tensor:
        """The rule's output at every path state. A rule of the path gets each row's step index and memory; the
        memory of the `moving` rows takes this step in, the others' stays as it was."""
        state, context = self.state, {"t": self.timesteps[self.state["k"]], "T": self.T}
        if not on_path(self.rule):
            return self.rule(pred_cond, pred_uncond, state["s"], **context)
        memory = {"momentum": state["momentum"]} if "momentum" in state else {}
        out = self.rule(pred_cond, pred_uncond, state["s"], step=state["k"], state=memory, **context)
        if "momentum" in memory:
            keep = moving.view(-1, *[1] * (out.ndim - 1))
            state["momentum"] = torch.where(keep, memory["momentum"].to(state["momentum"].dtype), state["momentum"])
        return out

    def advance(self, pred: torch.Tensor, moving: torch.Tensor, generator: torch.Generator):
        """One deterministic step for the `moving` rows; a path that reached t = 0 starts again from noise."""
        state = self.state
        state["x_t"] = self.path.step(pred, state["x_t"], state["k"], moving)
        state["k"] = state["k"] + moving.long()
        done = state["k"] == len(self.path)
        if done.any():
            self.keep(state["x_t"][done], state["cond"][done])
            new = self.fresh(int(done.sum()), pred.shape[1:], generator)
            for key, value in new.items():
                state[key][done] = value

    def keep(self, x_0: torch.Tensor, cond: torch.Tensor):
        if self.pool is None:  # no rows of noised samples: nothing to keep
            return
        old = self.pool or {"x_0": x_0[:0], "cond": cond[:0]}
        self.pool = {key: torch.cat([old[key], new])[-POOL:] for key, new in (("x_0", x_0), ("cond", cond))}

    def samples(self, n: int, image_shape: tuple, generator: torch.Generator) -> dict:
        """The pool, after seeding it (once) with n fresh paths run to the end."""
        self.pool = {} if self.pool is None else self.pool
        if len(self.pool.get("x_0", ())) < n:
            paths, self.state = self.state, self.fresh(n, image_shape, generator)
            everyone = torch.ones(n, dtype=torch.bool)
            for _ in range(len(self.path)):
                self.advance(self.guide(*self.pair(), everyone), everyone, generator)
            self.state = paths
        return self.pool

    def start(self, n: int, image_shape: tuple, generator: torch.Generator):
        """n paths at staggered steps, so one batch does not hold a single t."""
        self.state = self.fresh(n, image_shape, generator)
        stop = torch.randint(0, len(self.path), (n,), generator=generator)
        for _ in range(int(stop.max())):
            moving = self.state["k"] < stop
            self.advance(self.guide(*self.pair(), moving), moving, generator)

    def draw(self, n: int, image_shape: tuple, generator: torch.Generator) -> dict:
        """n rows with the teacher's pair at them (the same n every step); the paths then move one step on."""
        if self.state is None:
            self.start(n, image_shape, generator)
        pred_cond, pred_uncond = self.pair()
        rows = {
            "x_t": self.state["x_t"].clone(),
            "t": self.timesteps[self.state["k"]],
            "cond": self.state["cond"].clone(),
            "s": self.state["s"].clone(),
            "pred_cond": pred_cond,
            "pred_uncond": pred_uncond,
        }
        if "negative" in self.state:
            rows["negative"] = self.state["negative"].clone()
        everyone = torch.ones(n, dtype=torch.bool)
        guided = self.guide(pred_cond, pred_uncond, everyone)
        if on_path(self.rule):  # its target needs the path's memory: this is it, as the teacher's sampler uses it
            rows["target"] = guided.clone()
        self.advance(guided, everyone, generator)
        return rows
