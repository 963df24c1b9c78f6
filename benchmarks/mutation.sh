#!/usr/bin/env bash
# Mutation testing of the core modules with mutmut 3.8.1, one module group at a time.
#
# Usage:
#   .venv/bin/pip install mutmut==3.8.1        # a dev tool, not in any extra
#   benchmarks/mutation.sh LABEL [GROUP ...]    # LABEL: before | after; GROUPs: see below
#
# Each group runs in its own copy of the repository under $MUTATION_WORK (default
# /tmp/bilstm_jax_mutation/LABEL/GROUP), with a [tool.mutmut] section written for that group
# only: the files it mutates, the test files that may kill its mutants, and the functions
# sampled. Nothing is written into the checkout except the summary,
# benchmarks/results/mutation.json (key LABEL.GROUP). Notes: benchmarks/MUTATION_NOTES.md.
#
# Workers are forked from a fork server that has imported jax but run nothing: a worker
# forked from a process that ran the tests would find the unmutated code in jax's jit
# caches and never trace the mutant. For the same reason the stats run (which records
# the tests that reach each function) clears jax's caches after every test.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=$ROOT/.venv/bin/python
MUTMUT=$ROOT/.venv/bin/mutmut
LABEL=${1:?usage: benchmarks/mutation.sh before|after [group ...]}
shift
GROUPS_ALL=(losses batching metrics crf layer resume)
GROUPS_RUN=("${@:-${GROUPS_ALL[@]}}")
WORK=${MUTATION_WORK:-/tmp/bilstm_jax_mutation}/$LABEL
FAST='not slow and not subprocess'

# group -> files to mutate | pytest arguments (test files, marker) | mutant name globs |
# SAMPLE, a glob on the mutant's number that keeps the campaign near an hour on one core
# ('[05]': the mutants numbered ...0 and ...5 of every function, a fifth; '[02468]' half;
# '[0]' a tenth).
spec() {
  SAMPLE=''
  case $1 in
    losses)
      FILES='bilstm_jax/tasks/losses.py'
      TESTS="tests/tasks/test_losses.py|-m|$FAST"
      NAMES='bilstm_jax.tasks.losses.*' ;;
    batching)
      FILES='bilstm_jax/data/batching.py'
      TESTS="tests/data/test_batching.py|-m|$FAST"
      NAMES='bilstm_jax.data.batching.*'
      SAMPLE='[02468]' ;;
    metrics)
      FILES='bilstm_jax/tasks/span_metrics.py bilstm_jax/data/tag_schemes.py'
      TESTS="tests/tasks/test_text.py|tests/data/test_tag_schemes.py|-m|$FAST|-k|span or f1 or spans or scheme"
      NAMES='bilstm_jax.tasks.span_metrics.* bilstm_jax.data.tag_schemes.*'
      SAMPLE='[05]' ;;
    crf)
      # The slow tests too (pytorch-crf and the module are strong checks), but the two
      # that compile most (jit/vmap/grad, finite differences): ~40 s a surviving mutant.
      FILES='bilstm_jax/heads/crf.py'
      TESTS='tests/heads/test_crf.py|-m|not subprocess|-k|not jit_vmap_grad and not numerically'
      NAMES='bilstm_jax.heads.crf.*'
      SAMPLE='[05]' ;;
    layer)
      FILES='bilstm_jax/nn/lstm.py bilstm_jax/nn/recurrence.py'
      TESTS="tests/nn/test_lstm.py|-m|$FAST"
      in_tree tests/nn/test_properties.py && TESTS="tests/nn/test_properties.py|$TESTS"
      NAMES='bilstm_jax.nn.lstm.* bilstm_jax.nn.recurrence.*'
      SAMPLE='[0]' ;;
    resume)
      # Only what resuming goes through: save, restore, the shape and config checks.
      FILES='bilstm_jax/training/checkpoint.py'
      TESTS="tests/training/test_checkpoint.py|-m|$FAST"
      in_tree tests/training/test_resume_invariants.py &&
        TESTS="tests/training/test_resume_invariants.py|$TESTS"
      NAMES='bilstm_jax.training.checkpoint.xǁCheckpointsǁsave__mutmut_*'
      NAMES+=' bilstm_jax.training.checkpoint.xǁCheckpointsǁrestore*'
      NAMES+=' bilstm_jax.training.checkpoint.xǁCheckpointsǁ_check_shapes__mutmut_*'
      NAMES+=' bilstm_jax.training.checkpoint.xǁCheckpointsǁlatest_step__mutmut_*'
      NAMES+=' bilstm_jax.training.checkpoint.xǁCheckpointsǁ_candidates__mutmut_*'
      NAMES+=' bilstm_jax.training.checkpoint.xǁCheckpointsǁ_first_good__mutmut_*'
      NAMES+=' bilstm_jax.training.checkpoint.x_*'
      SAMPLE='[05]' ;;
    *) echo "unknown group $1; known: ${GROUPS_ALL[*]}" >&2; exit 2 ;;
  esac
  local n sampled=''
  for n in $NAMES; do sampled+=" $n$SAMPLE"; done
  NAMES=${sampled# }
}

# One snapshot of the working tree for the whole campaign, so that editing tests while it
# runs changes nothing ($MUTATION_TREE: an earlier snapshot to reuse).
mkdir -p "$WORK"
if [[ -n ${MUTATION_TREE:-} ]]; then
  cp "$MUTATION_TREE" "$WORK/tree.tar"
else
  (cd "$ROOT" && tar cf - --exclude=__pycache__ bilstm_jax tests configs train.py \
    pyproject.toml setup.py) > "$WORK/tree.tar"
fi

in_tree() { tar tf "$WORK/tree.tar" | grep -qx "$1"; }

for group in "${GROUPS_RUN[@]}"; do
  spec "$group"
  dir=$WORK/$group
  rm -rf "$dir"
  mkdir -p "$dir"
  tar xf "$WORK/tree.tar" -C "$dir"
  mkdir -p "$dir/plugin"
  cat > "$dir/plugin/mutation_plugin.py" <<'EOF'
"""Clears jax's caches after each test of mutmut's stats run, so that every test that
reaches a traced function is recorded as reaching it (a cached trace would hide it)."""
import os

import jax


def pytest_runtest_teardown(item):
  if os.environ.get('MUTANT_UNDER_TEST') == 'stats':
    jax.clear_caches()
EOF
  printf '%s\n' jax jax.numpy numpy flax.linen optax chex hypothesis pytest \
    absl.testing.parameterized torch torchcrf seqeval.metrics > "$dir/preload.txt"
  GROUP_FILES=$FILES GROUP_TESTS=$TESTS "$PY" - "$dir" <<'EOF'
import json, os, sys
d = sys.argv[1]
files = os.environ['GROUP_FILES'].split()
tests = os.environ['GROUP_TESTS'].split('|')
with open(os.path.join(d, 'pyproject.toml'), 'a') as f:
  f.write('\n[tool.mutmut]\n')
  f.write('source_paths = ["bilstm_jax"]\n')
  f.write(f'only_mutate = {json.dumps(files)}\n')
  f.write('also_copy = ["configs", "train.py"]\n')
  f.write(f'pytest_add_cli_args_test_selection = {json.dumps(tests)}\n')
  f.write('pytest_add_cli_args = ["-p", "mutation_plugin", "-p", "no:cacheprovider"]\n')
  f.write('process_isolation = "forkserver"\n')
  f.write('forkserver_warmup = "import"\n')
  f.write(f'preload_modules_file = "{d}/preload.txt"\n')
  f.write('use_git_change_detection = false\n')
EOF
  echo "== $LABEL $group: $FILES"
  start=$(date +%s)
  # shellcheck disable=SC2086
  # XLA's persistent cache: a program the mutant leaves unchanged compiles once per group;
  # the key is the program itself, so a changed one compiles afresh.
  (cd "$dir" && JAX_PLATFORMS=cpu PYTHONPATH=$dir/plugin JAX_COMPILATION_CACHE_DIR=$dir/xla \
    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0 JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES=0 nice -n 10 "$MUTMUT" run --max-children 1 \
    $NAMES) > "$dir/run.log" 2>&1 || echo "mutmut exited $? (see $dir/run.log)"
  end=$(date +%s)
  (cd "$dir" && "$PY" - "$ROOT/benchmarks/results/mutation.json" "$LABEL.$group" \
    "$((end - start))" "$NAMES" <<'EOF'
"""Summarises mutants/*.meta into benchmarks/results/mutation.json[LABEL.GROUP]."""
import collections, fnmatch, glob, json, os, sys
from mutmut.stats import status_by_exit_code
out, key, wall, names = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4].split()
counts, survivors = collections.Counter(), []
for meta in sorted(glob.glob('mutants/**/*.py.meta', recursive=True)):
  for name, code in json.load(open(meta))['exit_code_by_key'].items():
    if not any(fnmatch.fnmatch(name, n) for n in names):
      continue
    status = 'not run' if code is None else status_by_exit_code[code]
    counts[status] += 1
    if status not in ('killed', 'timeout'):
      survivors.append(f'{name}: {status}')
total = sum(counts.values())
tested = total - counts['not run'] - counts['skipped']
score = (counts['killed'] + counts['timeout']) / tested if tested else 0.0
entry = {'total': total, **dict(sorted(counts.items())), 'score': round(score, 3),
         'wall_s': wall, 'not_killed': survivors}
results = json.load(open(out)) if os.path.exists(out) else {}
results[key] = entry
json.dump(dict(sorted(results.items())), open(out, 'w'), indent=1)
print(key, {k: v for k, v in entry.items() if k != 'not_killed'})
EOF
  )
done
