# Set-up and entry points. `make demo` and `make test` each install what they need first.
PYTHON ?= python3
# The CPU wheel for this machine. GPU users: install your CUDA build of torch first, then `make demo TORCH=torch`.
TORCH ?= torch==2.13.0
OUT ?= demo-out
# `make fashion OBJECTIVE=flow`: the UNet trained by rectified flow instead of VP. Each runs its named recipe
# (docs/recipes.md); the Flux transformer is `make fashion-flux-pipeline`.
OBJECTIVE ?=
RECIPE ?= $(if $(OBJECTIVE),fashion-$(OBJECTIVE),fashion)
SUFFIX := $(if $(OBJECTIVE),-$(OBJECTIVE))
RUNS ?= runs/fashion$(SUFFIX)
RESULTS ?= docs/results/fashion$(SUFFIX)
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: install data demo test bench fashion fashion-pipeline fashion-flux-pipeline fewstep fewstep-fashion guiders-fashion distill-cost distill-cost-fashion

install:
	$(PYTHON) -m pip install --quiet --disable-pip-version-check "$(TORCH)" -e ".[test,text]"

# Fashion-MNIST's IDX files, from Debian's package, into /usr/share/datasets/fashion-mnist.
data:
	@dpkg -s dataset-fashion-mnist >/dev/null 2>&1 || \
	{ $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq dataset-fashion-mnist >/dev/null; }

demo: install
	$(PYTHON) -m cfgdistill demo --out $(OUT) --overwrite

# Lint first (ruff check and format), then the suite. pytest exits 5 when it collects nothing: that means the
# suite went missing, so it fails loudly.
test: install data
	$(PYTHON) -m ruff check --quiet . && $(PYTHON) -m ruff format --check --quiet .
	$(PYTHON) -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "no tests were collected: is tests/ missing?" >&2; fi; exit $$rc

# Regenerates docs/results (the README's table and plots) from the demo's models, training them first if missing.
bench: install
	[ -f $(OUT)/student/cfgdistill.json ] || $(PYTHON) -m cfgdistill demo --out $(OUT) --overwrite
	$(PYTHON) benchmarks/run.py --models $(OUT) --out docs/results

# Text-conditioned Fashion-MNIST: train a teacher, distill it, evaluate both into docs/results/fashion(-flow).
fashion: install data
	$(PYTHON) -m cfgdistill train --recipe $(RECIPE) --out $(RUNS)/teacher --overwrite
	$(PYTHON) -m cfgdistill distill --recipe $(RECIPE) --teacher $(RUNS)/teacher --out $(RUNS)/student --overwrite
	$(PYTHON) -m cfgdistill evaluate --teacher $(RUNS)/teacher --student $(RUNS)/student --out $(RESULTS) \
	    --guidance 1,2,3,5 --steps 20 --n 500 --overwrite

# A latent text-to-image pipeline trained here in StableDiffusionPipeline's layout (VAE, UNet on MiniLM token
# states), distilled from its prompts alone like any downloaded pipeline (the `pipeline` recipe), then judged in
# the stock pipeline.
PIPE_RUNS ?= runs/fashion-pipeline
fashion-pipeline: install data
	$(PYTHON) benchmarks/fashion_pipeline.py build --out $(PIPE_RUNS) --quiet
	$(PYTHON) -m cfgdistill distill --teacher $(PIPE_RUNS)/teacher --prompts $(PIPE_RUNS)/prompts.txt \
	    --out $(PIPE_RUNS)/student --recipe pipeline --overwrite --quiet
	$(PYTHON) -m cfgdistill evaluate --teacher $(PIPE_RUNS)/teacher --student $(PIPE_RUNS)/student \
	    --out docs/results/fashion-pipeline --guidance 2,3,5 --steps 20 --n 500 --overwrite --quiet

# FLUX.1 [dev]'s recipe at Fashion-MNIST size: a latent pipeline in FluxPipeline's layout trained here, distilled
# from its prompts alone into a full and a LoRA student with the guidance embedder (the `pipeline-flux` recipe),
# both judged against the teacher's true CFG in the stock FluxPipeline at 2000 paired samples per s, then the full
# student on the 70 held-out paraphrases at s = 3.
FLUX_RUNS ?= runs/fashion-flux-pipeline
FLUX_RESULTS ?= docs/results/fashion-flux-pipeline
FLUX_JUDGE = --guidance 1,2,3,5 --steps 20 --n 2000 --overwrite --quiet
fashion-flux-pipeline: install data
	$(PYTHON) benchmarks/fashion_pipeline.py build --layout flux --out $(FLUX_RUNS) --quiet
	$(PYTHON) -m cfgdistill distill --teacher $(FLUX_RUNS)/teacher --prompts $(FLUX_RUNS)/prompts.txt \
	    --out $(FLUX_RUNS)/student --recipe pipeline-flux --overwrite --quiet
	$(PYTHON) -m cfgdistill distill --teacher $(FLUX_RUNS)/teacher --prompts $(FLUX_RUNS)/prompts.txt \
	    --out $(FLUX_RUNS)/student-lora --recipe pipeline-flux --lora-rank 8 --lr 2e-3 --overwrite --quiet
	$(PYTHON) -m cfgdistill evaluate --teacher $(FLUX_RUNS)/teacher --student $(FLUX_RUNS)/student \
	    --out $(FLUX_RESULTS) $(FLUX_JUDGE)
	$(PYTHON) -m cfgdistill evaluate --teacher $(FLUX_RUNS)/teacher --student $(FLUX_RUNS)/student-lora \
	    --out $(FLUX_RESULTS)/lora $(FLUX_JUDGE)
	$(PYTHON) -m cfgdistill evaluate --teacher $(FLUX_RUNS)/teacher --student $(FLUX_RUNS)/student \
	    --prompts $(FLUX_RUNS)/held_out.txt --out $(FLUX_RESULTS)/held-out --guidance 3 --steps 20 --n 700 \
	    --overwrite --quiet

# Few-step students (stage 2): progressive rounds 64 -> 1 steps from the demo's student, judged against the teacher
# at 64 steps into docs/results/fewstep (the demo's models are trained first if missing).
# `make fewstep OBJECTIVE=flow`: the same from digits models trained by rectified flow, into fewstep-flow.
FEWSTEP_RECIPE ?= digits
FEWSTEP_MODELS ?= $(if $(OBJECTIVE),runs/digits$(SUFFIX),$(OUT))
FEWSTEP_NAME ?= fewstep$(SUFFIX)
fewstep: install
	[ -f $(FEWSTEP_MODELS)/student/cfgdistill.json ] || \
	    $(PYTHON) -m cfgdistill demo --out $(FEWSTEP_MODELS) --overwrite $(if $(OBJECTIVE),--objective $(OBJECTIVE))
	$(PYTHON) -m cfgdistill progressive --student $(FEWSTEP_MODELS)/student --out runs/$(FEWSTEP_NAME) \
	    --recipe $(FEWSTEP_RECIPE) --overwrite --quiet
	$(PYTHON) benchmarks/fewstep.py --models $(FEWSTEP_MODELS) --fewstep runs/$(FEWSTEP_NAME) \
	    --out docs/results/$(FEWSTEP_NAME)

# The same from the fashion-flow recipe's models (`make fashion OBJECTIVE=flow`, run first
# if missing; the VP recipe predicts eps, which progressive refuses), 500 samples per s.
fewstep-fashion: install data
	[ -f runs/fashion-flow/student/cfgdistill.json ] || $(MAKE) fashion OBJECTIVE=flow
	$(MAKE) fewstep FEWSTEP_MODELS=runs/fashion-flow FEWSTEP_NAME=fewstep-fashion-flow FEWSTEP_RECIPE=fashion-flow

# Guiders on the Fashion-MNIST flow teacher (`make fashion OBJECTIVE=flow` first if missing): a weak guide teacher
# (500 steps), then the fp32 students of the guider recipes (docs/recipes.md), each judged by `evaluate` at 500
# samples per s, then the teacher under every guider (the Pareto plot).
GUIDER_RUNS ?= runs/fashion-guiders
GUIDER_TEACHER ?= runs/fashion-flow/teacher
GUIDER_DISTILL = $(PYTHON) -m cfgdistill distill --teacher $(GUIDER_TEACHER) --overwrite --quiet --set mixed_precision=no
GUIDER_EVAL = $(PYTHON) -m cfgdistill evaluate --teacher $(GUIDER_TEACHER) --steps 20 --n 500 --overwrite --quiet
guiders-fashion: install data
	[ -f $(GUIDER_TEACHER)/cfgdistill.json ] || $(MAKE) fashion OBJECTIVE=flow
	$(PYTHON) -m cfgdistill train --recipe fashion-flow --steps 500 --out $(GUIDER_RUNS)/guide --overwrite --quiet
	$(GUIDER_DISTILL) --out $(GUIDER_RUNS)/apg --recipe fashion-flow-apg
	$(GUIDER_DISTILL) --out $(GUIDER_RUNS)/autoguidance --recipe fashion-flow-autoguidance \
	    --set guide_model=$(GUIDER_RUNS)/guide
	$(GUIDER_DISTILL) --out $(GUIDER_RUNS)/interval --recipe fashion-flow-interval
	$(GUIDER_DISTILL) --out $(GUIDER_RUNS)/negatives-q --recipe fashion-flow-negatives
	for g in apg interval autoguidance; do \
	    $(GUIDER_EVAL) --student $(GUIDER_RUNS)/$$g --out docs/results/fashion-guiders/$$g --guidance 2,3,5; done
	$(GUIDER_EVAL) --student $(GUIDER_RUNS)/negatives-q --out docs/results/fashion-negatives-q --guidance 1,2,3,5
	$(PYTHON) benchmarks/guiders.py --teacher $(GUIDER_TEACHER) --guide-model $(GUIDER_RUNS)/guide \
	    --out docs/results/guiders-fashion-flow --n 500 --steps 20 --guidance 1,2,3,5

# Distillation cost on digits: the gates against distillation steps for each recipe (docs/distillation.md). The
# first run times the teacher's recipe once more; the others reuse that time.
COST = $(PYTHON) benchmarks/distill_cost.py --teacher $(OUT)/teacher
COST_OUT = docs/results/distill_cost
distill-cost: install
	[ -f $(OUT)/student/cfgdistill.json ] || $(PYTHON) -m cfgdistill demo --out $(OUT) --overwrite
	$(COST) --steps 200,400,600 --out $(COST_OUT)/digits_default.json
	T=$$($(PYTHON) -c "import json; print(json.load(open('$(COST_OUT)/digits_default.json'))['teacher_seconds'])"); \
	$(COST) --teacher-seconds $$T --steps 100,200,400 --set loss_space=guidance --out $(COST_OUT)/digits_guidance.json && \
	$(COST) --teacher-seconds $$T --steps 200,400 --set s_one_share=0.25 --out $(COST_OUT)/digits_s_one.json && \
	$(COST) --teacher-seconds $$T --steps 100,200,400 --set loss_space=guidance --set s_one_share=0.25 \
	    --out $(COST_OUT)/digits_guidance_s_one.json && \
	$(COST) --teacher-seconds $$T --steps 300 --recipe digits --out $(COST_OUT)/digits_guidance_s_one_300.json && \
	$(COST) --teacher-seconds $$T --steps 150,200 --set loss_space=guidance --set s_one_share=0.25 --set lr=2e-3 \
	    --out $(COST_OUT)/digits_guidance_s_one_lr2e-3.json && \
	$(COST) --teacher-seconds $$T --steps 200 --set loss_space=guidance --set s_one_share=0.5 \
	    --out $(COST_OUT)/digits_guidance_s_one_half.json

# The same on Fashion-MNIST's flow UNet teacher (`make fashion OBJECTIVE=flow`); the teacher's time (1,325 s) is
# read from its TensorBoard log rather than spent again.
distill-cost-fashion: install data
	[ -f runs/fashion-flow/teacher/cfgdistill.json ] || $(MAKE) fashion OBJECTIVE=flow
	$(PYTHON) benchmarks/distill_cost.py --teacher runs/fashion-flow/teacher --recipe fashion --steps 400,1600 \
	    --guidance 1,2,3,5 --n 500 --sample-steps 20 --teacher-seconds 1325 --out $(COST_OUT)/fashion_default.json
	$(PYTHON) benchmarks/distill_cost.py --teacher runs/fashion-flow/teacher --recipe fashion-flow --steps 600 \
	    --guidance 1,2,3,5 --n 500 --sample-steps 20 \
	    --teacher-seconds 1325 --out $(COST_OUT)/fashion_s_one.json
