#!/usr/bin/env bash
# Everything a session lent the GPU machine should run, as one device call (no machine
# here has a GPU; the device tool's README gives the lease rules). From the repo root:
#
#   here, once:  echo /.whl/ >> .git/info/exclude
#                python3 -m pip download --no-deps --only-binary=:all: -d .whl \
#                  ml_collections==$(pip show ml_collections | sed -n 's/^Version: //p')
#   device run:  bash benchmarks/gpu_check.sh      (carry: [".whl"], timeout_s: 590)
#
# The GPU image has jax (CUDA), flax, optax, orbax, chex, matplotlib, tensorboard, torch
# (CUDA) and pytest, but not ml_collections, hence the carried wheel. Each step has its
# own time limit, so one that hangs leaves time for the rest; logs and the benchmark's
# JSON go to $OUT (benchmarks/results/gpu without it). It runs on a CPU machine too
# (the GPU-only tests skip and the benchmark times the CPU), which is how it was checked.
set -uo pipefail
OUT=${OUT:-benchmarks/results/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if ! python3 -c 'import ml_collections' 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"

step() {  # step NAME SECONDS COMMAND...: runs it with a limit, output to $OUT/NAME.log
  local name=$1 limit=$2
  shift 2
  echo "== $name: $*"
  local start=$SECONDS
  timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.log" | tail -n 40
  echo "== $name: exit ${PIPESTATUS[0]} after $((SECONDS - start)) s"
}

step env 60 python3 -c 'import jax, flax, optax, torch; print(jax.__version__, flax.__version__,
optax.__version__, torch.__version__, jax.devices(), torch.cuda.is_available())'
# cuDNN against our reference scan (forward and gradients), and the scan layer on the GPU
# (the CPU kernel's cases are CPU-only, hence -k). No TF32, as on a CPU.
step tests 120 env JAX_DEFAULT_MATMUL_PRECISION=highest python3 -m pytest -q -p no:cacheprovider \
  tests/nn/test_cudnn.py tests/nn/test_fused.py -k 'not native and not runs_the_kernel'
# The whole training loop (fused on the GPU): checkpoints, export, plots.
rm -rf /tmp/gpu_check_run
step train 90 python3 train.py --config configs/default.py --workdir /tmp/gpu_check_run
# fused, cudnn, jax_rnn (cuDNN alone), linen and PyTorch on CUDA, fwd+bwd and train step.
step bench 270 python3 benchmarks/bench_bilstm.py --runtime default --no-bf16 \
  --json "$OUT/bench_gpu.json"
