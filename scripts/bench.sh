#!/usr/bin/env bash
# Builds the benchmarks (Release, in their own build folder), runs them with OpenBLAS pinned to one
# thread, and writes the medians into docs/benchmarks.md, between "generated" markers (one pair per
# section; text outside the markers is kept).
#
#   scripts/bench.sh                          # build, run both benches, section "default"
#   BENCH_FILTER='BM_tape' scripts/bench.sh   # a subset (passed to --benchmark_filter)
#   OPENBLAS_CORETYPE=SkylakeX BENCHES=bench_ops SECTION=skylakex scripts/bench.sh
#                                             # BLAS kernels forced, written as a section of its own
#   scripts/bench.sh profile                  # instruction counts of the per-op chain under callgrind,
#                                             # grouped by engine part, section "profile"
#   scripts/bench.sh rnn                      # RNN training steps: engine, hand BPTT, LibTorch (when
#                                             # CMake finds it: binary bench_rnn_torch, else bench_nn),
#                                             # section "rnn"
#   scripts/bench.sh autobatch                # autobatching: per-example code eager against autobatch::map
#                                             # (bench/nn/bench_autobatch.cpp), section "autobatch"
#   scripts/bench.sh transformer              # the Transformer encoder layer against its GEMM floor and
#                                             # LibTorch (binary bench_transformer_torch when CMake finds
#                                             # it, else bench_nn), cached against recomputed decoding,
#                                             # section "transformer"
#   scripts/bench.sh workload                 # one training step of examples 10 and 11's models (seq2seq
#                                             # addition; dates with attention), engine against the same
#                                             # models in LibTorch (binary bench_workload_torch when CMake
#                                             # finds it, else bench_nn), section "workload"
#   scripts/bench.sh threads                  # intra-op threads: the LSTM step at 1 and 2 threads, engine
#                                             # (tapegrad::set_num_threads), its GEMMs, LibTorch (binary
#                                             # bench_threads_torch when CMake finds it, else bench_nn),
#                                             # wall time, section "threads"; run it on a quiet machine
#   scripts/bench.sh rnn-profile              # callgrind of the fixed-iteration RNN steps (engine and
#                                             # hand), annotations in $BUILD_DIR/results, no doc section
#   scripts/bench.sh memory                   # RNN memory (bench/nn/bench_rnn_memory.cpp): the tape's
#                                             # bytes at the end of the forward against the hand BPTT's
#                                             # saved activations, the peak RSS of one training step at
#                                             # T = 1000, B = 32, I/H = 128/256 (one process per
#                                             # implementation) and run_checkpointed, section "memory"
#
# LibTorch (modes rnn, transformer, workload, threads): when libtorch-dev is not installed, scripts/install-deps.sh
# --torch installs it first (BENCH_TORCH=0: neither install nor use it; the torch columns stay empty).
# Neither the tests nor CI need LibTorch.
#
# Environment: BUILD_DIR (build-bench), JOBS (1: the machine is shared), REPS (5), BENCHES (bench_autograd
# bench_ops), BENCH_FILTER (all), BENCH_MIN_TIME (Google Benchmark's default when unset), SECTION
# (default, or profile), DOC (docs/benchmarks.md). OPENBLAS_CORETYPE: when unset, the core matching the
# CPU's flags (scripts/blas-core.sh); without one OpenBLAS 0.3.21 falls back to its SSE3 "Prescott"
# kernels on this CPU, which it does not know (4-5x slower GEMM). Every implementation (engine,
# hand BPTT, LibTorch: the same libopenblas) runs with the same core, and the report prints it.
set -euo pipefail

MODE="${1:-tables}"
case "$MODE" in tables | profile | rnn | rnn-profile | autobatch | transformer | workload | memory | threads) ;; *) echo "usage: $0 [profile | rnn | rnn-profile | autobatch | transformer | workload | memory | threads]" >&2; exit 2 ;; esac

# The invocation as given (the settings the caller chose), for the doc.
INVOCATION="scripts/bench.sh${1:+ $1}"
for v in BUILD_DIR SECTION REPS BENCH_MIN_TIME BENCH_FILTER BENCHES OPENBLAS_CORETYPE BENCH_TORCH OMP_WAIT_POLICY; do
  if [[ -n "${!v:-}" ]]; then INVOCATION="$v='${!v}' $INVOCATION"; fi
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUILD_DIR="${BUILD_DIR:-build-bench}"
JOBS="${JOBS:-1}"
REPS="${REPS:-5}"
BENCH_FILTER="${BENCH_FILTER:-}"
DOC="${DOC:-docs/benchmarks.md}"
PY=/usr/bin/python3  # Debian's; the python3 first on PATH may be another build
REPORT=bench/support/bench_report.py
if [[ "$MODE" == profile ]]; then
  SECTION="${SECTION:-profile}"
  BENCHES=(bench_autograd)
elif [[ "$MODE" == autobatch ]]; then
  SECTION="${SECTION:-autobatch}"
  BENCHES=(bench_nn)
  BENCH_FILTER="${BENCH_FILTER:-^BM_ab_}"
elif [[ "$MODE" == rnn || "$MODE" == rnn-profile ]]; then
  SECTION="${SECTION:-rnn}"
  [[ "$MODE" == rnn ]] && BENCH_FILTER="${BENCH_FILTER:-^BM_(binadd|elman|lstm|gru)_}"  # bench_nn holds autobatch's too
  BENCHES_GIVEN="${BENCHES:-}"
  read -r -a BENCHES <<<"${BENCHES:-bench_nn}"
elif [[ "$MODE" == memory ]]; then
  SECTION="${SECTION:-memory}"
  BENCHES=(bench_rnn_memory)
elif [[ "$MODE" == transformer ]]; then
  SECTION="${SECTION:-transformer}"
  BENCHES_GIVEN="${BENCHES:-}"
  read -r -a BENCHES <<<"${BENCHES:-bench_nn}"
  BENCH_FILTER="${BENCH_FILTER:-^BM_transformer_}"
elif [[ "$MODE" == workload ]]; then
  SECTION="${SECTION:-workload}"
  BENCHES_GIVEN="${BENCHES:-}"
  read -r -a BENCHES <<<"${BENCHES:-bench_nn}"
  BENCH_FILTER="${BENCH_FILTER:-^BM_workload_}"
elif [[ "$MODE" == threads ]]; then
  SECTION="${SECTION:-threads}"
  BENCHES_GIVEN="${BENCHES:-}"
  read -r -a BENCHES <<<"${BENCHES:-bench_nn}"
  BENCH_FILTER="${BENCH_FILTER:-^BM_threads_}"
  # libgomp reads its wait policy when it loads: passive unless the caller chose one. With the default
  # (spinning) policy, OpenMP's and OpenBLAS's idle threads fight for this 2-core machine's cores and 2
  # threads run slower than 1 (docs/benchmarks.md, "Results: intra-op threads").
  export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
else
  SECTION="${SECTION:-default}"
  read -r -a BENCHES <<<"${BENCHES:-bench_autograd bench_ops}"
fi

TORCH=OFF
if [[ "$MODE" == rnn || "$MODE" == transformer || "$MODE" == workload || "$MODE" == threads ]] && [[ "${BENCH_TORCH:-1}" != 0 ]]; then
  TORCH=ON
  if ! dpkg-query -W -f='${Status}' libtorch-dev 2>/dev/null | grep -q "install ok installed"; then
    echo "== LibTorch missing: scripts/install-deps.sh --torch"
    bash scripts/install-deps.sh --torch
  fi
fi
echo "== configure + build (Release, ${BUILD_DIR}, -j${JOBS}, TAPEGRAD_BENCH_TORCH=${TORCH})"
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DTAPEGRAD_BUILD_BENCH=ON -DTAPEGRAD_BENCH_TORCH="$TORCH" \
  -DTAPEGRAD_BUILD_TESTS=OFF -DTAPEGRAD_BUILD_EXAMPLES=OFF >/dev/null
# LibTorch found: the binary bench_<mode>_torch holds the engine's benches and LibTorch's (one process).
if [[ "$TORCH" == ON ]] && [[ -z "${BENCHES_GIVEN:-}" ]] &&
  [[ "$(cmake --build "$BUILD_DIR" --target help)" == *"bench_${MODE}_torch"* ]]; then
  BENCHES=("bench_${MODE}_torch")
fi
if [[ "$MODE" == threads ]] && [[ -z "${BENCHES_GIVEN:-}" ]] &&
  [[ "$(cmake --build "$BUILD_DIR" --target help)" == *bench_threads_torch* ]]; then
  BENCHES=(bench_threads_torch)  # LibTorch found: engine and LibTorch at 1 and 2 threads in one binary
fi
cmake --build "$BUILD_DIR" -j "$JOBS" --target "${BENCHES[@]}"

OUT_DIR="$BUILD_DIR/results"
mkdir -p "$OUT_DIR"
# The environment every implementation runs under (one process per binary, so one malloc for all): BLAS
# and OpenMP (LibTorch) pinned to one thread; glibc malloc with its defaults unless the caller sets
# MALLOC_* / GLIBC_TUNABLES, which are passed through and recorded in the benchmark context.
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
# OpenBLAS's kernels for this CPU when the caller set none (scripts/blas-core.sh: SkylakeX with AVX-512,
# Haswell with AVX2), printed below and recorded in the report.
if [[ -z "${OPENBLAS_CORETYPE:-}" ]]; then
  OPENBLAS_CORETYPE="$(bash scripts/blas-core.sh)"
  echo "== OPENBLAS_CORETYPE unset: chose '${OPENBLAS_CORETYPE}' from the CPU's flags"
fi
if [[ -n "$OPENBLAS_CORETYPE" ]]; then export OPENBLAS_CORETYPE; else unset OPENBLAS_CORETYPE; fi
DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "== OpenBLAS core: $("$PY" - <<'PYEOF'
import ctypes, ctypes.util
lib = ctypes.CDLL(ctypes.util.find_library("openblas") or "libopenblas.so.0")
lib.openblas_get_corename.restype = ctypes.c_char_p
print(lib.openblas_get_corename().decode())
PYEOF
) (OPENBLAS_NUM_THREADS=1, OMP_NUM_THREADS=1, OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-(unset)}, glibc malloc${GLIBC_TUNABLES:+, GLIBC_TUNABLES=$GLIBC_TUNABLES}${MALLOC_ARENA_MAX:+, MALLOC_ARENA_MAX=$MALLOC_ARENA_MAX})"

if [[ "$MODE" == memory ]]; then
  # One fresh process per peak-RSS figure: a process's peak RSS is a high-water mark. Set-up is not
  # counted (bench_rnn_memory resets the mark after it); the figure is one training step's.
  BIN="$BUILD_DIR/bench/bench_rnn_memory"
  LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
  echo "== $BIN table"
  TABLE="$("$BIN" table)"
  echo "$TABLE"
  RSS_DIMS="1000 32 128 256"
  RSS_LINES=()
  for cell in elman lstm gru; do
    for impl in hand engine checkpoint; do
      echo "== $BIN rss $cell $impl $RSS_DIMS"
      line="$("$BIN" rss $cell $impl $RSS_DIMS)"
      echo "$line"
      RSS_LINES+=("$line")
    done
  done
  CK=()
  for dims in "100 32 128 256" "1000 32 128 256"; do
    echo "== $BIN checkpoint $dims"
    CK+=("$("$BIN" checkpoint $dims)")
    echo "${CK[-1]}"
  done
  LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"
  RSS_TABLE="$(printf '%s\n' "${RSS_LINES[@]}" | "$PY" -c '
import sys
rows = {}
for line in sys.stdin:
    f = line.split()
    if len(f) == 11 and f[0] == "rss":
        rows[(f[1], f[2])] = [int(v) for v in f[7:11]]
print("| cell | hand peak RSS of the step, MB (first / second step) | engine, MB | engine / hand | engine run_checkpointed, MB | checkpointed / hand | set-up RSS before the step, MB (hand / engine / checkpointed) |")
print("|---|---:|---:|---:|---:|---:|---|")
mb = lambda kb: kb / 1024.0
for cell in ("elman", "lstm", "gru"):
    h, e, c = rows[(cell, "hand")], rows[(cell, "engine")], rows[(cell, "checkpoint")]
    hp, ep, cp = max(h[1], h[2]), max(e[1], e[2]), max(c[1], c[2])
    print(f"| {cell} | {mb(hp):.1f} ({mb(h[1]):.1f} / {mb(h[2]):.1f}) | {mb(ep):.1f} ({mb(e[1]):.1f} / {mb(e[2]):.1f}) | **{ep / hp:.2f}** "
          f"| {mb(cp):.1f} ({mb(c[1]):.1f} / {mb(c[2]):.1f}) | **{cp / hp:.2f}** | {mb(h[0]):.1f} / {mb(e[0]):.1f} / {mb(c[0]):.1f} |")
')"
  DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  BODY="$(cat <<MDEOF
#### Run: $SECTION

- Date: $DATE (run by \`$INVOCATION\`)
- Host: $(uname -n), $(nproc --all) CPUs, load average $LOAD_BEFORE before and $LOAD_AFTER after
- OpenBLAS: OPENBLAS_NUM_THREADS=1, OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-(unset)}; float32, one thread; \`tune_malloc()\`

Commands: \`$BIN table\`; \`$BIN rss <cell> <hand|engine|checkpoint> $RSS_DIMS\` (one process each);
\`$BIN checkpoint 100 32 128 256\` and \`$BIN checkpoint 1000 32 128 256\`.

Tape bytes at the end of the forward (values, saved data and node lists in the tape's arena after nn::run
and the loss, before backward; and after nn::run alone) against the hand BPTT's saved activations
(\`HandModel::saved_bytes\`, bench/nn/rnn_hand.hpp; "with workspace" adds its backward buffers):

$TABLE

Peak RSS of one training step (forward, loss, backward, SGD) at T = 1000, B = 32, I/H = 128/256: the
process's resident high-water mark, reset after set-up (weights, data), over the first step and again over
the second (steady state); the figure is the larger. It includes the weights, x, the target and the code:

$RSS_TABLE

nn::run_checkpointed (segments of about sqrt(T) steps) against nn::run, engine (the peak of the tape is
the outer graph's; the recomputation's nested graph is in the RSS table above):

${CK[0]}

${CK[1]}
MDEOF
)"
  "$PY" -c 'import sys; sys.path.insert(0, "bench/support"); import bench_report; bench_report.write_section(sys.argv[1], sys.argv[2], sys.argv[3].splitlines())' "$DOC" "$SECTION" "$BODY" >/dev/null
  echo "== report -> $DOC (section $SECTION)"
  exit 0
fi

if [[ "$MODE" == rnn-profile ]]; then
  # Fixed-iteration steps (bench_rnn.cpp: BM_profile_*), engine and hand, under callgrind, in bench_nn
  # (valgrind 3.19 runs out of brk space with LibTorch loaded). Under valgrind OpenBLAS picks its Haswell
  # kernels, not the Prescott ones it runs natively here. PROFILES="lstm_engine lstm_hand" adds the LSTM
  # (B = 1, 32/64, T = 20, 200 steps); on 2026-11-29 that run hung at exit and wrote an empty file.
  # Also: elman_engine, elman_hand (B = 1, 32/64, T = 20, 200 steps) and <cell>_hand_fused (fused-W hand).
  read -r -a PROFILES <<<"${PROFILES:-binadd_engine binadd_hand}"
  for name in "${PROFILES[@]}"; do
    out="$OUT_DIR/callgrind.BM_profile_$name.out"
    run=(valgrind --tool=callgrind --callgrind-out-file="$out" --toggle-collect='*BM_engine*' --toggle-collect='*BM_hand*'
      "$BUILD_DIR/bench/${BENCHES[0]}" --benchmark_filter="^BM_profile_$name/")
    echo "== ${run[*]}"
    "${run[@]}"
    callgrind_annotate --inclusive=no --threshold=99 "$out" >"$OUT_DIR/callgrind.BM_profile_$name.txt"
    callgrind_annotate --inclusive=yes --threshold=99 "$out" >"$OUT_DIR/callgrind.BM_profile_$name.incl.txt"
  done
  exit 0
fi

if [[ "$MODE" == profile ]]; then
  # Fixed-iteration variants of the chain (2000 iterations x 101 ops), under callgrind.
  SPECS=()
  COMMANDS=()
  for variant in "BM_tape_chain_profile:record + backward" "BM_tape_chain_nograd_profile:forward only, NoGrad"; do
    name="${variant%%:*}"
    title="${variant#*:}"
    out="$OUT_DIR/callgrind.$name.out"
    ann="$OUT_DIR/callgrind.$name.txt"
    run=(valgrind --tool=callgrind --callgrind-out-file="$out" --toggle-collect='*BM_tape_chain*'
      "$BUILD_DIR/bench/bench_autograd" --benchmark_filter="^$name/")
    echo "== ${run[*]}"
    "${run[@]}"
    callgrind_annotate --inclusive=no --threshold=100 "$out" >"$ann"
    COMMANDS+=("OPENBLAS_NUM_THREADS=1 valgrind --tool=callgrind --callgrind-out-file=$out --toggle-collect='*BM_tape_chain*' $BUILD_DIR/bench/bench_autograd --benchmark_filter='^$name/'"
      "callgrind_annotate --inclusive=no --threshold=100 $out > $ann")
    SPECS+=("$title ($name/16)=$ann=202000")
  done
  echo "== report -> $DOC"
  "$PY" "$REPORT" profile --doc "$DOC" --section "$SECTION" --date "$DATE" --invocation "$INVOCATION" \
    --commands "$(printf '%s\n' "${COMMANDS[@]}")" "${SPECS[@]}"
  exit 0
fi

# Repetitions of all benchmarks run in random interleaved order: on this shared machine load drifts over
# minutes, and interleaving spreads the drift over the engine and raw sides of a pair alike.
ARGS=(--benchmark_repetitions="$REPS" --benchmark_report_aggregates_only=true --benchmark_enable_random_interleaving=true
  --benchmark_out_format=json)
if [[ -n "$BENCH_FILTER" ]]; then ARGS+=(--benchmark_filter="$BENCH_FILTER"); fi
if [[ -n "${BENCH_MIN_TIME:-}" ]]; then ARGS+=(--benchmark_min_time="$BENCH_MIN_TIME"); fi

JSONS=()
COMMANDS=()
for b in "${BENCHES[@]}"; do
  json="$OUT_DIR/$SECTION-$b.json"
  cmd="OPENBLAS_NUM_THREADS=1${OPENBLAS_CORETYPE:+ OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE}$([[ "$TORCH" == ON ]] && echo " OMP_NUM_THREADS=1" || true) $BUILD_DIR/bench/$b ${ARGS[*]} --benchmark_out=$json"
  echo "== $cmd"
  [[ "$MODE" == threads ]] && echo "== load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  "$BUILD_DIR/bench/$b" "${ARGS[@]}" --benchmark_out="$json"
  JSONS+=("$json")
  COMMANDS+=("$cmd")
done

echo "== report -> $DOC"
"$PY" "$REPORT" tables --doc "$DOC" --section "$SECTION" --date "$DATE" --invocation "$INVOCATION" \
  --commands "$(printf '%s\n' "${COMMANDS[@]}")" "${JSONS[@]}"
