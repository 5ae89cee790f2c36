#!/usr/bin/env bash
# The main job: installs what is missing, builds Release, and runs the course tour.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
export OPENBLAS_NUM_THREADS=1
./build/examples/02_binary_addition "$@"
