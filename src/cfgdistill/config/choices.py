"""The choice lists of the settings; the library's registries are checked against these in its tests."""

SAMPLER_HELP = "diffusers scheduler, or Meng's stochastic sampler (default: ddim for VP, euler for flow models)"
SAMPLERS = ("ddim", "dpm++", "euler", "heun", "stochastic")  # ddim is VP only; stochastic: Meng's Algorithm 3
PREDICTIONS = ("epsilon", "v_prediction")
CONDITIONING = ("class", "text")
OBJECTIVES = ("vp", "flow")  # forward processes (processes.PROCESSES)
ARCHS = ("unet", "flux")  # networks (networks/)
LOSS_SPACES = ("prediction", "eps", "guidance")
MAX_SAMPLES = 100_000
DEFAULT_GUIDANCE = (0.0, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)
