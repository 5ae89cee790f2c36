#!/usr/bin/env bash
# The OPENBLAS_CORETYPE matching this CPU's flags (the rule of tapegrad::matching_blas_core): SkylakeX with
# avx512f, avx512bw, avx512dq and avx512vl; Haswell with avx2 and fma; nothing otherwise. OpenBLAS 0.3.21
# runs its SSE3 "Prescott" kernels on CPUs it does not know (this project's Xeon, family 6 model 207).
#   scripts/blas-core.sh              prints the core (empty line when none fits)
#   scripts/blas-core.sh CMD ARGS...  runs CMD with OPENBLAS_CORETYPE set to that core (ctest: the
#                                     conformance suite under the kernels a user should get)
set -euo pipefail
flags=" $(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | cut -d: -f2) "
core=""
if [[ "$flags" == *" avx512f "* && "$flags" == *" avx512bw "* && "$flags" == *" avx512dq "* && "$flags" == *" avx512vl "* ]]; then
  core=SkylakeX
elif [[ "$flags" == *" avx2 "* && "$flags" == *" fma "* ]]; then
  core=Haswell
fi
if [[ $# -eq 0 ]]; then
  echo "$core"
  exit 0
fi
if [[ -n "$core" ]]; then export OPENBLAS_CORETYPE="$core"; fi
echo "blas-core.sh: OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-(unset)}"
exec "$@"
