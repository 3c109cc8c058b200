# ct — the two commands of the README, and the rest of the developer loop.
#   make          build everything under build/
#   make run      install missing Debian packages, build, run ct-demo on 127.0.0.1:8080
#   make test     install missing Debian packages, build, run the whole test suite
#   make test-asan / make test-tsan     the suite under ASan+UBSan / TSan (clang), own build dirs
#   make bench    benchmarks, side by side with their peers (see docs/BENCHMARKS.md)
#   make bench-http   ct-http against nginx and Go's net/http (bench/http/run.sh, ~25 min)
#   make bench-db     client abort -> query stopped through ct-demo, SQLite and PostgreSQL
#   make fuzz     the request parser under libFuzzer for FUZZ_SECONDS (default 60), clang
#   make format   clang-format every C file
JOBS ?= $(shell nproc)
FUZZ_SECONDS ?= 60
CTEST = ctest --output-on-failure -j$(JOBS) --no-tests=error

.PHONY: all build deps run test test-asan test-tsan bench bench-http bench-db fuzz format clean

all: build

build:
	@test -f build/Makefile || cmake -S . -B build
	cmake --build build -j$(JOBS)

deps:
	@scripts/deps.sh build

run: deps build
	./build/apps/demo/ct-demo --listen $(or $(LISTEN),127.0.0.1:8080) --data-dir build/ct-demo-data

test: deps build
	cd build && $(CTEST)

test-asan:
	@scripts/deps.sh sanitize
	@test -f build-asan/Makefile || CC=clang cmake -S . -B build-asan -DCT_SANITIZE=address -DCT_TEST_TIMEOUT_SCALE=4 -DCT_BUILD_EXAMPLES=ON
	cmake --build build-asan -j$(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 $(CTEST)

test-tsan:
	@scripts/deps.sh sanitize
	@test -f build-tsan/Makefile || CC=clang cmake -S . -B build-tsan -DCT_SANITIZE=thread -DCT_TEST_TIMEOUT_SCALE=8 -DCT_BUILD_EXAMPLES=ON
	cmake --build build-tsan -j$(JOBS)
	cd build-tsan && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 $(CTEST)

bench:
	@scripts/deps.sh bench
	@test -f build-bench/Makefile || cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DCT_BUILD_BENCH=ON -DCT_BUILD_TESTS=OFF -DCT_BUILD_EXAMPLES=OFF
	cmake --build build-bench -j$(JOBS)
	./build-bench/bench/bench_token
	./build-bench/bench/bench_pool
	./build-bench/bench/bench_chan
	./build-bench/bench/bench_http_parser
	./build-bench/bench/bench_sqlite
	./build-bench/bench/bench_curl
	./build-bench/bench/jobs_cycles
	scripts/pg-test.sh start build-bench/pg && { ./build-bench/bench/bench_jobs 200000 20000 20 build-bench/pg/conninfo && ./build-bench/bench/bench_pg build-bench/pg/conninfo; rc=$$?; scripts/pg-test.sh stop build-bench/pg; exit $$rc; }

# ct-demo against nginx and Go's net/http on 127.0.0.1: abort storm, throughput, scale.
# BENCH_HTTP_ARGS: e.g. --quick, or --only storm|throughput|scale.
bench-http:
	@scripts/deps.sh httpbench
	@test -f build-bench/Makefile || cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DCT_BUILD_BENCH=ON -DCT_BUILD_TESTS=OFF -DCT_BUILD_EXAMPLES=OFF
	cmake --build build-bench -j$(JOBS)
	bench/http/run.sh $(BENCH_HTTP_ARGS)

# ct-demo's layered endpoint on SQLite, then on a throw-away PostgreSQL: client abort -> query
# stopped. BENCH_DB_ARGS: e.g. --n 1000 --conc 8.
bench-db:
	@scripts/deps.sh bench
	@test -f build-bench/Makefile || cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DCT_BUILD_BENCH=ON -DCT_BUILD_TESTS=OFF -DCT_BUILD_EXAMPLES=OFF
	cmake --build build-bench -j$(JOBS)
	bench/http/db_abort.sh $(BENCH_DB_ARGS)

# The seed corpus is copied to a scratch directory, so the inputs the fuzzer adds never land in
# the repository; a crashing input is written to build-fuzz/ (crash-*), and running the target
# on that file replays it.
# Each fuzz target runs FUZZ_SECONDS on a scratch copy of its seed corpus (tests/fuzz/corpus/NAME).
FUZZ_TARGETS ?= http_parser http_request
fuzz:
	@scripts/deps.sh sanitize
	@test -f build-fuzz/Makefile || CC=clang cmake -S . -B build-fuzz -DCT_BUILD_FUZZ=ON -DCT_BUILD_TESTS=OFF -DCT_BUILD_EXAMPLES=OFF
	cmake --build build-fuzz -j$(JOBS) --target $(addprefix fuzz_,$(FUZZ_TARGETS))
	@for t in $(FUZZ_TARGETS); do \
	  work=$$(mktemp -d) && cp tests/fuzz/corpus/$$t/* "$$work"/ && \
	  dict=tests/fuzz/http_parser.dict && \
	  ./build-fuzz/tests/fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -max_len=2048 \
	    -timeout=10 -dict=$$dict -artifact_prefix=build-fuzz/$$t- \
	    -print_final_stats=1 "$$work" || { rm -rf "$$work"; exit 1; }; \
	  rm -rf "$$work"; \
	done

format:
	clang-format -i $$(git ls-files '*.c' '*.h' '*.cc')

clean:
	rm -rf build build-asan build-tsan build-bench build-fuzz
