"""Where and when a figure was measured, recorded beside it in every results file."""

import datetime
import os
import platform

import torch


def cpu_features() -> dict:
    """The CPU's vector capability as torch sees it, and whether it has bf16 instructions (AVX-512 BF16, AMX):
    what decides whether bf16 autocast pays on a CPU."""
    try:
        lines = open("/proc/cpuinfo").read().splitlines()
    except OSError:
        lines = []
    field = lambda name: next((line.split(":", 1)[1].strip() for line in lines if line.startswith(name)), "")
    flags = field("flags").split()
    bf16 = any(flag in flags for flag in ("avx512_bf16", "amx_bf16"))
    model = field("model name") or platform.processor() or "unknown"
    return {
        "cpu_model": model,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_bf16_instructions": bf16,
    }


def machine_record() -> dict:
    """The date (UTC), the machine, and the torch build and threads a measurement ran with."""
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": len(os.sched_getaffinity(0)),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": device,
        **cpu_features(),
    }
