"""`--mixed-precision auto`: the autocast precision chosen for the machine at hand.

On a GPU, bf16 where it has bf16 (Ampere and later), else fp32. On a CPU the answer depends on the chip
(AVX-512 BF16 or AMX make bf16 faster; without them it can be several times slower) and on the network, so
the choice is measured: a few training steps of this very network and objective in fp32 and in bf16,
interleaved. bf16 wins only where it runs at least BF16_MARGIN times as fast: it costs precision, and a tie
within the timing noise would change a run's figures for nothing. The figures are kept in the cache
($CFGDISTILL_CACHE/precision.json) per network, batch and machine, so later runs of the same recipe choose alike
without timing again. A resumed run keeps the precision its checkpoint records, so it continues exactly.
"""

import hashlib
import json
import os
import platform
import statistics
import time
import warnings

import torch

from ..io import atomic, cache_dir
from .machine import cpu_features

AUTO = "auto"
PROBE_STEPS = 3  # timed steps per precision, after one warm-up step each
BF16_MARGIN = 1.1  # bf16 must measure this much faster than fp32 to be chosen


def resolve_precision(config, run, found, model, objective, batch: tuple, log) -> None:
    """Replace `config.mixed_precision` "auto" by the precision this run uses, in place, so the run's recipe
    and its checkpoint record it. `found`: the checkpoint being resumed, if any; `batch`: (x_0, labels,
    generator) for the objective's first draw."""
    if config.mixed_precision != AUTO:
        return
    log = (lambda text: None) if run.quiet else log  # the choice is in the run's record either way
    if found is not None:
        config.mixed_precision = found[2].get("recipe", {}).get("mixed_precision", "no")
        return
    if gpu_precision(run):
        config.mixed_precision = gpu_precision(run)
        log(f"mixed precision auto: {config.mixed_precision} ({torch.cuda.get_device_name()})")
        return
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # each process would time alone, and might choose apart
        config.mixed_precision = "no"
        log("mixed precision auto: fp32 with several CPU processes (pass --mixed-precision bf16 to choose it)")
        return
    config.mixed_precision, seconds, cached = cpu_choice(model, objective, batch, config)
    if seconds is None:  # the loss is not finite: the first step's own check says why
        return
    ratio = seconds["no"] / seconds["bf16"]
    how = "measured before on this machine" if cached else f"timed {PROBE_STEPS} steps of each"
    name = {"no": "fp32", "bf16": "bf16"}[config.mixed_precision]
    verdict = "at least" if name == "bf16" else "under"
    log(
        f"mixed precision auto: {name} (bf16 steps run {ratio:.2f}x as fast as fp32 on this CPU, {verdict} the "
        f"{BF16_MARGIN:g}x it needs; {how})"
    )


def gpu_precision(run) -> str | None:
    """bf16 on a GPU that has it, else fp32 ("no"); None when the run is on the CPU."""
    if not torch.cuda.is_available() or run.cpu:
        return None
    return "bf16" if torch.cuda.is_bf16_supported() else "no"


def cpu_choice(model, objective, batch: tuple, config) -> tuple:
    """("no" or "bf16", median seconds of a step in each, whether the figures came from the cache)."""
    key = probe_key(model, objective, config)
    path = cache_dir() / "precision.json"
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if key in known:
        return choose(known[key]["seconds"]), known[key]["seconds"], True
    seconds = time_steps(model, objective, batch)
    if seconds is None:
        return "no", None, False
    choice = choose(seconds)
    known[key] = {"choice": choice, "seconds": seconds}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic(path) as tmp:
            tmp.write_text(json.dumps(known, indent=1))
    except OSError:  # a read-only cache costs a probe per run, nothing more
        pass
    return choice, seconds, False


def choose(seconds: dict) -> str:
    """bf16 only with the margin; the rule is applied to cached timings too, so it holds for old entries."""
    return "bf16" if seconds["no"] >= BF16_MARGIN * seconds["bf16"] else "no"


def probe_key(model, objective, config) -> str:
    """The network, objective, batch and machine a choice holds for."""
    network = getattr(model, "config", None) or {}
    recipe = {
        "network": type(model).__name__,
        "config": {k: v for k, v in dict(network).items() if not k.startswith("_")},
        "objective": objective.name,
        "batch_size": config.batch_size,
        "machine": [platform.processor(), os.cpu_count(), torch.get_num_threads(), torch.__version__, cpu_features()],
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()[:16]


def time_steps(model, objective, batch: tuple) -> dict:
    """Median seconds of a forward and backward step in fp32 and in bf16 autocast, interleaved (None if the loss
    is not finite). The objective's own state (teacher paths) is put back afterwards, so a probed run trains as
    one given its precision."""
    saved = {k: v.clone() for k, v in objective.state_dict().items()}
    rows = objective.draw(*batch)
    times = {"no": [], "bf16": []}
    model.train()
    for precision in ["no", "bf16"] * (PROBE_STEPS + 1):
        started = time.perf_counter()
        with warnings.catch_warnings():  # torch's notes on bf16 kernels it cannot fuse: the timing decides
            warnings.simplefilter("ignore")
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = objective.loss(model, rows)
            finite = bool(torch.isfinite(loss))
            if finite:
                loss.backward()
        if not finite:
            objective.load_state_dict(saved)
            return None
        times[precision].append(time.perf_counter() - started)
    model.zero_grad(set_to_none=True)
    objective.load_state_dict(saved)
    return {p: statistics.median(t[1:]) for p, t in times.items()}
