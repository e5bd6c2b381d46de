# The two commands the README promises, and their parts.
#   make demo   install, build, and run evac's main job on its embedded default (the whole story: lab/demo.sh story)
#   make test   install, build, and pass every test (unit, integration, e2e, fault, fuzz replay; all but e2e again
#               under ASan/UBSan; then each fuzz target fuzzed for a bounded time with libFuzzer)
.PHONY: deps build build-asan build-fuzz test test-unit test-asan demo demo-down clean

deps:
	scripts/install-deps.sh

build: deps
	cmake --preset default
	cmake --build --preset default

build-asan: deps
	cmake --preset asan
	cmake --build --preset asan

# The fuzz targets only (clang, libFuzzer): the rest of the tree is built twice already.
build-fuzz: deps
	cmake --preset fuzz
	cmake --build --preset fuzz

test: build build-asan build-fuzz
	ctest --preset default --output-junit junit.xml
	ctest --preset asan
	ctest --preset fuzz

test-unit: build
	ctest --preset unit

demo: build
	lab/demo.sh story

demo-down:
	lab/demo.sh down

clean:
	rm -rf build
