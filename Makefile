# The movie system. The contract: `make` builds every binary into build/bin/,
# `make run` starts the system locally, `make test` runs the whole suite.
# Each installs the Debian packages it needs first (scripts/install-deps.sh).

BUILD_DIR ?= build
ASAN_DIR  ?= build-asan
TSAN_DIR  ?= build-tsan
FUZZ_DIR  ?= build-fuzz
CMAKE_FLAGS ?=
WERROR ?= ON
JOBS ?= 2
FUZZ_SECONDS ?= 30
ENV ?= dev

.PHONY: all deps configure build run test test-images test-asan test-tsan fuzz bench images deploy cd format format-check lint clean

all: build

deps:
	@scripts/install-deps.sh

$(BUILD_DIR)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD_DIR) -DMOVIE_WERROR=$(WERROR) $(CMAKE_FLAGS)

configure: $(BUILD_DIR)/CMakeCache.txt

build: deps configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

run: build
	scripts/run.sh $(BUILD_DIR)

# The whole suite but the image path (label images: it needs podman and a
# container build of the tree; `make test-images`, CI's containers stage).
test: build
	scripts/test.sh $(BUILD_DIR) -LE images

# The container images run as Kubernetes would (tests/container/test_images.sh),
# then the cd pipeline's image path through a real docker-registry (ctest -L images).
test-images: build
	tests/container/test_images.sh
	cd $(BUILD_DIR) && ctest --output-on-failure -L images

# The suite again, built with AddressSanitizer and UndefinedBehaviorSanitizer,
# except the release scenarios (label e2e: see tests/kubesim/CMakeLists.txt).
test-asan: deps
	cmake -S . -B $(ASAN_DIR) -DMOVIE_WERROR=$(WERROR) -DMOVIE_SANITIZE=ON $(CMAKE_FLAGS)
	cmake --build $(ASAN_DIR) -j $(JOBS)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  scripts/test.sh $(ASAN_DIR) -LE e2e

# The multi-threaded tests (stores with worker threads, Kafka ingestion, the
# gRPC client, a real service under load) built with ThreadSanitizer; any
# report from any process fails (scripts/test-tsan.sh).
test-tsan: deps
	cmake -S . -B $(TSAN_DIR) -DMOVIE_WERROR=$(WERROR) -DMOVIE_TSAN=ON $(CMAKE_FLAGS)
	cmake --build $(TSAN_DIR) -j $(JOBS)
	scripts/test-tsan.sh $(TSAN_DIR)

# Every libFuzzer target for FUZZ_SECONDS from its committed seed corpus.
fuzz: deps
	CC=clang cmake -S . -B $(FUZZ_DIR) -DMOVIE_FUZZ=ON -DMOVIE_WERROR=$(WERROR) $(CMAKE_FLAGS)
	cmake --build $(FUZZ_DIR) -j $(JOBS) --target fuzzers
	scripts/fuzz.sh $(FUZZ_DIR) $(FUZZ_SECONDS)

bench: build
	bench/run.sh $(BUILD_DIR)

images:
	scripts/images.sh

# DRY_RUN=1: lint and show what would change (kubectl diff), apply nothing.
DRY_RUN ?= 0
deploy:
	DRY_RUN=$(DRY_RUN) scripts/deploy.sh $(ENV)

# The continuous-deployment pipeline for one commit (COMMIT, default HEAD):
# gate, images, push, staging, smoke, moviectl release (docs/release.md).
# CD_ARGS: more scripts/cd.sh options (--config FILE, --state DIR, --until STEP).
COMMIT ?= HEAD
CD_ARGS ?=
cd: build
	scripts/cd.sh run $(CD_ARGS) $(COMMIT)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD_DIR) $(ASAN_DIR) $(TSAN_DIR) $(FUZZ_DIR)
