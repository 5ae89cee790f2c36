#!/usr/bin/env bash
# Installs what is missing, builds (Release) and runs every test with ctest.
#   scripts/test.sh              the tests (the README's test command; CI runs this)
#   scripts/test.sh --sanitize   the same tests built with AddressSanitizer + UndefinedBehaviorSanitizer (CI runs
#                                both, .ci/run; what the sanitized run leaves out is said below)
#   scripts/test.sh --fuzz       the libFuzzer harnesses of tests/fuzz (clang, ASan + UBSan), each run for
#                                TAPEGRAD_FUZZ_SECONDS (60) over its checked-in corpus; not part of CI
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" == "--fuzz" ]]; then
  bash scripts/install-deps.sh --fuzz
  cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ -DTAPEGRAD_FUZZ=ON \
    -DTAPEGRAD_BUILD_TESTS=OFF -DTAPEGRAD_BUILD_BENCH=OFF -DTAPEGRAD_BUILD_EXAMPLES=OFF >/dev/null
  cmake --build build-fuzz -j"$(nproc)" --target fuzz_npz_load fuzz_tree_parse fuzz_tokenizer
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  for target in fuzz_npz_load fuzz_tree_parse fuzz_tokenizer; do
    # New inputs go to a scratch folder; the checked-in corpus is only read. A crash stops the run with
    # its input saved as build-fuzz/crash-<sha1>.
    work=build-fuzz/corpus/$target; mkdir -p "$work"
    echo "fuzz: $target for ${TAPEGRAD_FUZZ_SECONDS:-60} s"
    rc=0
    build-fuzz/tests/fuzz/$target -max_total_time="${TAPEGRAD_FUZZ_SECONDS:-60}" -max_len=4096 -rss_limit_mb=4096 \
      -artifact_prefix=build-fuzz/ -print_final_stats=1 "$work" tests/fuzz/corpus/$target >"build-fuzz/$target.log" 2>&1 || rc=$?
    grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb|ERROR|SUMMARY|crash-' "build-fuzz/$target.log" || true
    ((rc == 0)) || { echo "fuzz: $target found a crash (log: build-fuzz/$target.log)"; exit 1; }
  done
  echo "fuzz: no crash"
  exit 0
fi
bash scripts/install-deps.sh
# The digits (from Debian's python3-sklearn package) let the CNN example's smoke test run too.
[ -f data/digits.csv.gz ] || bash scripts/fetch-digits.sh || echo "test: digits not fetched; the CNN smoke test is skipped"
build=build; type=Release; extra=()
if [[ "${1:-}" == "--sanitize" ]]; then
  # -O1 -g1 (ASan's advice; line tables keep file:line in the reports) compiles in half the CPU time of -O2 -g,
  # and the build is most of CI's sanitized time. The examples and benches are not built (their smoke tests are
  # left out); every test of the library runs (docs/reliability.md).
  build=build-asan; type=RelWithDebInfo
  extra=(-DTAPEGRAD_SANITIZE=ON -DTAPEGRAD_BUILD_BENCH=OFF -DTAPEGRAD_BUILD_EXAMPLES=OFF "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG")
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
fi
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=$type "${extra[@]}" >/dev/null
cmake --build "$build" -j"$(nproc)"
ctest --test-dir "$build" --output-on-failure -j"$(nproc)"
