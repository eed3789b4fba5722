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

deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "make deps: installing$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

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
FUZZ_DEB := clang libclang-rt-14-dev libomp-dev
fuzz-deps:
	@missing=""; for p in $(FUZZ_DEB); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi
fuzz: deps fuzz-deps
	CC=clang CXX=clang++ cmake -S . -B $(BUILD)-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDSV2_FUZZ=ON \
	  -DDSV2_WITH_CUDA=OFF -DDSV2_BUILD_TESTS=OFF
	cmake --build $(BUILD)-fuzz -j $(JOBS)
	@for f in $(BUILD)-fuzz/bin/fuzz_*; do \
	  name=$$(basename $$f); corpus=fuzz/corpus/$${name#fuzz_}; work=$(BUILD)-fuzz/corpus/$${name#fuzz_}; \
	  mkdir -p $$work; echo "== $$name: $(FUZZ_SECONDS) s from $$corpus"; \
	  if ! $$f -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
	       -artifact_prefix=$(BUILD)-fuzz/ $$work $$corpus > $$work.log 2>&1; then \
	    tail -n 60 $$work.log; echo "FUZZ FAILURE in $$name (input saved under $(BUILD)-fuzz/)"; exit 1; \
	  fi; \
	  grep -E "^(Done|stat::number_of_executed_units|stat::peak_rss_mb)" $$work.log; \
	done

install: build
	cmake --install $(BUILD) $(if $(PREFIX),--prefix $(PREFIX))

clean:
	rm -rf $(BUILD)
