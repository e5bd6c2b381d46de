# The two commands the README promises, and their parts.
#   make demo   install, build, and run evac's main job on its embedded default (the whole story: lab/demo.sh story)
#   make test   install, build, and pass every test (unit, integration, e2e; unit and integration again under ASan/UBSan)
.PHONY: deps build build-asan test test-unit test-asan demo demo-down clean

deps:
	scripts/install-deps.sh

build: deps
	cmake --preset default
	cmake --build --preset default

build-asan: deps
	cmake --preset asan
	cmake --build --preset asan

test: build build-asan
	ctest --preset default --output-junit junit.xml
	ctest --preset asan

test-unit: build
	ctest --preset unit

demo: build
	lab/demo.sh story

demo-down:
	lab/demo.sh down

clean:
	rm -rf build
