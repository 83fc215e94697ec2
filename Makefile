# Set-up and entry points. `make demo` and `make test` each install what they need first.
PYTHON ?= python3
# The CPU wheel for this machine. GPU users: install your CUDA build of torch first, then `make demo TORCH=torch`.
TORCH ?= torch==2.13.0
OUT ?= demo-out

.PHONY: install demo test bench

install:
	$(PYTHON) -m pip install --quiet --disable-pip-version-check "$(TORCH)" -e ".[test]"

demo: install
	$(PYTHON) -m cfgdistill demo --out $(OUT) --overwrite

# pytest exits 5 when it collects nothing: that means the suite went missing, so it fails loudly.
test: install
	$(PYTHON) -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "no tests were collected: is tests/ missing?" >&2; fi; exit $$rc

# Regenerates docs/results (the README's table and plots) from the demo's models, training them first if missing.
bench: install
	[ -f $(OUT)/student/cfgdistill.json ] || $(PYTHON) -m cfgdistill demo --out $(OUT) --overwrite
	$(PYTHON) benchmarks/run.py --models $(OUT) --out docs/results
