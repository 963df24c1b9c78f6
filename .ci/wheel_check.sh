#!/usr/bin/env bash
# The wheel as a user gets it. Builds it (the CPU kernel prebuilt in every variant of this
# architecture, against the oldest jax accepted: .ci/oldest.txt), installs it into a fresh
# venv and, with no C++ compiler on PATH and CXX unset, checks that:
#   1. with only the core dependencies, `import bilstm_jax` works, pulls in none of the
#      training app's, and BiLSTM runs the prebuilt kernel of the variant this CPU selects
#      (not the fallback scan), matching the scan;
#   2. with the [train] extra added (no [plots]: the plots are skipped), the console command
#      loads every shipped config by name (`--print_config`, outside the checkout: the
#      configs import each other as bilstm_jax.configs) and trains the default config.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
start=$SECONDS
tmp=$(mktemp -d /tmp/bilstm_jax_wheel.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

"$PY" -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q --upgrade pip
rm -rf build  # setuptools' staging area: a file left from an older tree would ship
"$tmp/venv/bin/pip" wheel -q --no-deps --build-constraint .ci/oldest.txt -w "$tmp/dist" .
wheel=$(ls "$tmp"/dist/bilstm_jax-*.whl)
echo "wheel: $(basename "$wheel") ($(du -k "$wheel" | cut -f1) KiB)"
"$tmp/venv/bin/pip" install -q "$wheel"

# No compiler anywhere the kernel loader could look: PATH holds the venv's bin only.
nocc=(env -u CXX -u BILSTM_JAX_KERNEL -u BILSTM_JAX_CXXFLAGS "PATH=$tmp/venv/bin"
  "BILSTM_JAX_CACHE=$tmp/kernel-cache" "HOME=$tmp/home")
(cd "$tmp" && "${nocc[@]}" "$tmp/venv/bin/python" - <<'EOF'
import importlib.util
import shutil
import sys
import warnings

assert not any(shutil.which(c) for c in ('c++', 'g++', 'cc', 'gcc', 'clang++')), 'a compiler'
warnings.simplefilter('error')  # a fallback warning fails the check
import jax
import jax.numpy as jnp

import bilstm_jax
from bilstm_jax import BiLSTM
from bilstm_jax.nn import native
from bilstm_jax.nn.native import _build

assert bilstm_jax.__file__.startswith(sys.prefix), bilstm_jax.__file__  # the wheel, not a checkout
# (orbax-checkpoint is flax's own dependency, so it is there either way.)
app = ('ml_collections', 'tensorboardX', 'tqdm', 'matplotlib', 'torch')
present = [m for m in app if importlib.util.find_spec(m)]
assert not present, f'the core install has the app dependencies {present}'
x = jax.random.normal(jax.random.key(0), (3, 7, 4))
lengths = jnp.array([7, 4, 0])
model = BiLSTM(8, num_layers=2)
params = model.init(jax.random.key(1), x, lengths)
text = jax.jit(model.apply).lower(params, x, lengths).as_text()
assert 'bilstm_jax_lstm_fwd' in text, 'BiLSTM does not run the kernel'
info = native.info()
best = _build.runnable()[0].name
assert info.prebuilt and info.variant == best and info.error is None, info
y, _ = model.apply(params, x, lengths)
y_scan, _ = BiLSTM(8, num_layers=2, impl='fused').apply(params, x, lengths)
assert float(jnp.max(jnp.abs(y - y_scan))) < 1e-5
print(f'core install: prebuilt kernel {info.variant} runs, no compiler, no app deps')
EOF
)

"$tmp/venv/bin/pip" install -q "$wheel[train]"
shipped=$(cd configs && ls ./*.py | sed -e 's|^\./||' -e 's|\.py$||' | grep -v '^__init__$' | LC_ALL=C sort)
installed=$(cd "$tmp" && "$tmp/venv/bin/python" -c '
import os, bilstm_jax.configs as c
names = [f[:-3] for f in os.listdir(c.__path__[0]) if f.endswith(".py") and f != "__init__.py"]
print("\n".join(sorted(names)))')
[ "$shipped" = "$installed" ] || { echo "the wheel's configs differ from configs/:"
  diff <(echo "$shipped") <(echo "$installed"); exit 1; }
for name in $installed; do
  (cd "$tmp" && "${nocc[@]}" "$tmp/venv/bin/bilstm-jax" --config="$name" --print_config \
    > /dev/null 2> "$tmp/stderr") || { echo "bilstm-jax --config=$name --print_config:"
    cat "$tmp/stderr"; exit 1; }
done
echo "bilstm-jax --print_config loads every shipped config:" $installed
(cd "$tmp" && "${nocc[@]}" "$tmp/venv/bin/bilstm-jax" --config=default --workdir "$tmp/run" \
  --compilation_cache= 2> "$tmp/stderr") || { cat "$tmp/stderr"; exit 1; }
test -f "$tmp/run/summary.json" || { cat "$tmp/stderr"; echo 'no summary.json'; exit 1; }
grep -q 'plots are skipped' "$tmp/stderr" || { cat "$tmp/stderr"; echo 'no plots notice'; exit 1; }
if grep -q 'CPU kernel is unavailable' "$tmp/stderr"; then cat "$tmp/stderr"; exit 1; fi
echo "bilstm-jax --config=default trained: $(ls "$tmp/run" | tr '\n' ' ')"
echo "wheel check passed in $((SECONDS - start)) s"
