# kvtier — two commands on a fresh Debian 12 machine:
#   make run    install what the build needs, build, start kvtierd in the foreground
#   make test   install, build, run the whole test suite (ctest)
# and:
#   make build  build only (Release); programs land in build/bin/
#   make fuzz   build the libFuzzer targets with clang into build/fuzz/
#   make format apply .clang-format to every C++/CUDA source

BUILD_DIR  ?= build
BUILD_TYPE ?= Release
JOBS       ?= $(shell nproc)
CMAKE_ARGS ?=
CTEST_ARGS ?=
LAUNCHER   := $(shell command -v ccache >/dev/null 2>&1 && echo -DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)

.PHONY: all setup configure build run test fuzz format clean

all: build

setup:
	@scripts/setup.sh

$(BUILD_DIR)/CMakeCache.txt:
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(LAUNCHER) $(CMAKE_ARGS)

configure: setup $(BUILD_DIR)/CMakeCache.txt

build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

run: build
	$(BUILD_DIR)/bin/kvtierd --data-dir ./var --socket ./var/kvtierd.sock

fuzz: setup
	cmake -S . -B $(BUILD_DIR)/fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DKVTIER_FUZZ=ON -DKVTIER_CUDA=OFF $(LAUNCHER)
	cmake --build $(BUILD_DIR)/fuzz -j $(JOBS) --target fuzz_targets

test: build fuzz
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) $(CTEST_ARGS)

format:
	git ls-files '*.h' '*.cc' '*.cu' '*.cuh' | xargs clang-format -i

clean:
	rm -rf $(BUILD_DIR)
