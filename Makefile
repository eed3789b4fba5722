# dsv2 — a thin front over CMake. The two commands of the quickstart:
#   make demo   the main job, on the embedded default model
#   make test   the whole suite (CTest; GPU tests report "skipped" without a GPU)
# Both install the Debian packages they need when they are missing (as root, or via sudo).

BUILD ?= build
JOBS  ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=

DEB_PACKAGES := cmake make g++ pkg-config libeigen3-dev nlohmann-json3-dev catch2 libcli11-dev libonig-dev

.PHONY: all deps build demo test clean install test-sanitize fuzz fuzz-deps

all: build

# $(call apt_install,PACKAGES): installs those of the Debian PACKAGES that are missing (as root, or via sudo).
apt_install = @bash tools/make/apt_install.sh $(1)

deps:
	$(call apt_install,$(DEB_PACKAGES))

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

demo: build
	$(BUILD)/bin/dsv2 demo

# GPU tests first, verbosely, so that a skip says why (no device, no driver); then everything.
test: build
	@cd $(BUILD) && ctest -L gpu -V 2>&1 | grep -E "SKIPPED|device:|rel err" || true
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# The CPU suite under AddressSanitizer + UndefinedBehaviorSanitizer (a separate build tree).
test-sanitize: deps
	cmake -S . -B $(BUILD)-sanitize -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDSV2_SANITIZE=ON -DDSV2_WITH_CUDA=OFF $(CMAKE_FLAGS)
	cmake --build $(BUILD)-sanitize -j $(JOBS)
	cd $(BUILD)-sanitize && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --output-on-failure -j $(JOBS) -LE "gpu|install"

# libFuzzer: each parser of untrusted files for FUZZ_SECONDS from its seed corpus (fuzz/corpus).
FUZZ_SECONDS ?= 30
FUZZ_SEED ?= 1
FUZZ_DEB := clang libclang-rt-14-dev libomp-dev
fuzz-deps:
	$(call apt_install,$(FUZZ_DEB))
fuzz: deps fuzz-deps
	CC=clang CXX=clang++ cmake -S . -B $(BUILD)-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDSV2_FUZZ=ON \
	  -DDSV2_WITH_CUDA=OFF -DDSV2_BUILD_TESTS=OFF
	cmake --build $(BUILD)-fuzz -j $(JOBS) --target fuzz_safetensors fuzz_config fuzz_tokenizer
	bash tools/make/fuzz.sh $(BUILD)-fuzz $(FUZZ_SECONDS) $(FUZZ_SEED)

# --- learning material: notebooks, docs, exercises (Python and Doxygen only here, never in build/test) ---
.PHONY: notebooks docs docs-deps exercise

# The C++ notebooks (notebooks-cpp/) as .ipynb files with the outputs of the compiled run:
# $(BUILD)/notebooks/NN_name.ipynb. Needs jupytext (tools/notebooks/requirements.txt, from PyPI).
notebooks: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) --target notebook_programs -j $(JOBS)
	@python3 -c "import jupytext" 2>/dev/null || python3 -m pip install -q -r tools/notebooks/requirements.txt
	python3 tools/notebooks/to_ipynb.py --src notebooks-cpp --bin $(BUILD)/notebooks/bin --out $(BUILD)/notebooks

# The documentation site (Doxygen, docs/Doxyfile) under $(BUILD)/docs/html; any warning fails it.
DOCS_DEB := doxygen
docs-deps:
	$(call apt_install,$(DOCS_DEB))
docs: docs-deps
	@mkdir -p $(BUILD)/docs
	( cat docs/Doxyfile; echo "OUTPUT_DIRECTORY = $(BUILD)/docs" ) | doxygen -
	@echo "docs: $(BUILD)/docs/html/index.html"

# One classroom exercise (exercises/README.md): builds YOUR exercises/exN_*/stub.cpp (or stub.cu)
# against the fixed tests exercises/tests/test_exN.cpp and runs them.   make exercise N=3
exercise: deps $(BUILD)/CMakeCache.txt
	@bash tools/make/exercise.sh $(BUILD) $(JOBS) "$(N)"

# --- speed: the oracle against PyTorch on the same work (docs/benchmarks.md) ----------------------
# A V2-Lite-shaped checkpoint reduced to BENCH_LAYERS layers (random bf16 weights, made once under
# $(BUILD)/bench), then BENCH_RUNS rounds of `dsv2 bench` and tools/bench/bench_torch.py
# (transformers, fp32, eager) back to back on the same config, weights, tokens and thread count,
# and the median of the per-round ratios: on a shared machine memory bandwidth drifts between
# minutes, so each ratio is taken within one round. The parts and floors come from round 1.
# Needs about 14 GB of memory and 4 GB of disk; about a minute per round on 2 cores.
.PHONY: bench bench-deps
BENCH_LAYERS   ?= 3
BENCH_MODEL    ?= $(BUILD)/bench/lite-$(BENCH_LAYERS)l
BENCH_THREADS  ?= $(JOBS)
BENCH_PREFILL  ?= 512
BENCH_CONTEXTS ?= 128,1024,4096
BENCH_STEPS    ?= 8
BENCH_RUNS     ?= 3
BENCH_ARGS      = --model $(BENCH_MODEL) --threads $(BENCH_THREADS) --prefill $(BENCH_PREFILL) \
                  --contexts $(BENCH_CONTEXTS) --steps $(BENCH_STEPS)
bench-deps:
	@python3 -c "import torch, transformers, safetensors" 2>/dev/null || python3 -m pip install -q -r tools/bench/requirements.txt
bench: build bench-deps
	python3 tools/bench/make_checkpoint.py --out $(BENCH_MODEL) --layers $(BENCH_LAYERS)
	bash tools/make/bench.sh $(BUILD) $(BENCH_RUNS) $(BENCH_ARGS)

# --- a lent GPU machine (cuda/README.md, "Running the GPU check on a lent H100 or H200") -------------
# gpu-prepare, HERE: dsv2, the GPU tests and the GPU benchmarks built portable (-DDSV2_NATIVE=OFF)
#   in build-gpu/, packed with their libraries and the Debian build dependencies into
#   build-gpu-carry/ — the one path the device calls carry.
# gpu-check, THERE: PART=tests (call 1: GPU tests, compute-sanitizer, dsv2 compare --device cuda)
#   or PART=bench (call 2: the GPU benchmarks beside their PyTorch peers); summary in $OUT/.
# gpu-bundle: the Debian build dependencies alone, into build-gpu-deps/ (gpu-prepare includes them).
.PHONY: gpu-bundle gpu-prepare gpu-check
PART ?= tests
gpu-bundle: deps
	bash tools/gpu/bundle_deps.sh build-gpu-deps
gpu-prepare: deps
	bash tools/gpu/prepare.sh build-gpu-carry
gpu-check:
	bash tools/gpu/gpu_check.sh $(PART)
