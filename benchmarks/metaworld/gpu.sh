#!/usr/bin/env bash
# The Meta-World benchmark at the GPU size (ViT-S/16 at 224 px, 2000 steps x 32 clips per row,
# 25 demos, 10 rollouts per task + 4 per OOD variation, 1 seed), as one prepared command for a
# lent GPU: stops itself before 10 minutes; rerun it to resume (every finished stage is reused).
# Needs: pip install -e '.[metaworld,gpu]' beforehand (the device machine has no internet), an
# EGL driver for MuJoCo (NVIDIA's, or libegl-mesa0).
#   benchmarks/metaworld/gpu.sh OUT [run.py options...]
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:?output folder}
shift
export MUJOCO_GL=${MUJOCO_GL:-egl}
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv || true
timeout 570 python -m benchmarks.metaworld.run --output "$OUT" --gpu --threads 8 "$@"
