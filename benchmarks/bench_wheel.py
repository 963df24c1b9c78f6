"""The wheel's prebuilt CPU kernel against a -march=native build, and install sizes.

  PYTHONPATH=. python benchmarks/bench_wheel.py                  # speed, then sizes
  PYTHONPATH=. python benchmarks/bench_wheel.py --part speed --wheel dist/bilstm_jax-*.whl

Speed: BiLSTM forward+backward (`jax.value_and_grad` of the outputs' sum, float32) at
bench_bilstm.py's small, medium and long shapes, with two kernel libraries: the variant
this CPU selects from a wheel (`--wheel`; else built here by the wheel's own command,
`_build.compile_to`) and `-march=native` (the first-use build of an editable checkout).
Both run in each child process, one call of each in turn (the second library under
renamed FFI targets), so that noise on this shared machine hits both alike; rounds are
fresh processes.
Reported: median milliseconds per call over all rounds, and prebuilt / native.

Sizes: `du` of site-packages (less an empty venv's) for the install before this change
(every dependency in the core) and after, where the core and each extra are installed
one after another into one venv, each figure the growth over the row before.

Prints markdown tables and writes benchmarks/results/wheel.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.bench_bilstm import CONFIGS  # noqa: E402

RESULTS = ROOT / 'benchmarks' / 'results' / 'wheel.json'
# The dependencies of the core before this change (pyproject.toml at 87150d9).
BEFORE = [
  'jax>=0.9', 'flax>=0.12.2', 'optax>=0.2.4', 'numpy>=2.0', 'chex>=0.1.89',
  'ml_collections>=1.0', 'absl-py>=2.1', 'orbax-checkpoint>=0.11.17', 'flatbuffers>=24',
  'tensorboardX>=2.6', 'matplotlib>=3.9', 'tqdm>=4.66',
]  # fmt: skip
TORCH_CPU = 'torch==2.13.0'  # the CPU build, as the README's install line gets it


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument('--part', choices=['speed', 'sizes', 'both'], default='both')
  p.add_argument('--configs', default='small,medium,long')
  p.add_argument('--wheel', default=None, help='take the prebuilt kernel from this wheel')
  p.add_argument('--rounds', type=int, default=3, help='child processes per library')
  p.add_argument('--budget', type=float, default=3.0, help='seconds of timing per config')
  p.add_argument('--json', default=str(RESULTS))
  p.add_argument('--child', default=None, help=argparse.SUPPRESS)
  return p.parse_args(argv)


# ----------------------------------------------------------------------------- speed


def child(libraries: dict[str, str], configs: list[str], budget: float) -> dict:
  """Both libraries in one process, timed call by call in turn: the first under the kernel's
  own FFI target names, the others under renamed ones (jax.ffi.ffi_call is wrapped while
  their programs are traced; XLA binds a handler when it compiles)."""
  import ctypes

  import jax
  import jax.numpy as jnp

  from bilstm_jax.nn import native
  from bilstm_jax.nn.lstm import BiLSTM

  ffi_call, rename = jax.ffi.ffi_call, ['']
  jax.ffi.ffi_call = lambda name, *a, **k: ffi_call(name + rename[0], *a, **k)
  for n, (kind, library) in enumerate(libraries.items()):
    lib = ctypes.CDLL(library)
    for target, symbol in native._TARGETS.items():
      suffix = f'_{kind}' if n else ''
      handler = jax.ffi.pycapsule(getattr(lib, symbol))
      jax.ffi.register_ffi_target(target + suffix, handler, platform='cpu')
  native._loaded.append(native.KernelInfo('bench', False, None, None, (), ()))
  out = {}
  for name in configs:
    b, t, i, h, layers = CONFIGS[name]
    x = jax.random.normal(jax.random.key(0), (b, t, i), jnp.float32)
    model = BiLSTM(h, num_layers=layers, impl='native')
    params = model.init(jax.random.key(1), x)

    def loss(params, x, model=model):
      return jnp.sum(model.apply(params, x)[0])

    exes = {}
    for n, kind in enumerate(libraries):
      rename[0] = f'_{kind}' if n else ''
      jax.clear_caches()  # else inner traces (with the other target names) are reused
      lowered = jax.jit(jax.value_and_grad(loss, argnums=(0, 1))).lower(params, x)
      text = lowered.as_text()
      assert f'@bilstm_jax_lstm_fwd{rename[0]}(' in text, 'traced with the wrong library'
      assert f'@bilstm_jax_lstm_bwd{rename[0]}(' in text, 'traced with the wrong library'
      exes[kind] = lowered.compile()
    rename[0] = ''
    for exe in exes.values():
      for _ in range(3):
        jax.block_until_ready(exe(params, x))
    times, end = {k: [] for k in exes}, time.perf_counter() + budget
    while time.perf_counter() < end or len(times[kind]) < 10:
      for kind, exe in exes.items():
        start = time.perf_counter()
        jax.block_until_ready(exe(params, x))
        times[kind].append(1e3 * (time.perf_counter() - start))
    out[name] = times
  return out


def build_libraries(args, tmp: Path) -> dict:
  """{'prebuilt': path, 'native': path} and which variant the prebuilt one is."""
  import jax

  from bilstm_jax.nn.native import _build

  variant = _build.runnable()[0]
  prebuilt = tmp / variant.filename
  if args.wheel:
    with zipfile.ZipFile(args.wheel) as whl:
      prebuilt.write_bytes(whl.read(f'bilstm_jax/nn/native/{variant.filename}'))
  else:
    _build.compile_to(prebuilt, variant, jax.ffi.include_dir())
  native = tmp / 'lstm_cpu-native.so'
  _build.compile_to(native, _build.NATIVE, jax.ffi.include_dir())
  return {'prebuilt': prebuilt, 'native': native}, variant.name


def speed(args) -> dict:
  configs = args.configs.split(',')
  with tempfile.TemporaryDirectory() as tmp:
    libs, variant = build_libraries(args, Path(tmp))
    samples = {kind: {c: [] for c in configs} for kind in libs}
    for r in range(args.rounds):  # which library owns the kernel's own target names alternates
      order = list(libs) if r % 2 == 0 else list(libs)[::-1]
      spec = json.dumps({kind: str(libs[kind]) for kind in order})
      out = subprocess.run(
        [sys.executable, __file__, '--child', spec, '--configs', args.configs,
         '--budget', str(args.budget)],
        capture_output=True, text=True, check=True, cwd=ROOT,
      ).stdout  # fmt: skip
      for c, by_kind in json.loads(out.splitlines()[-1]).items():
        for kind, times in by_kind.items():
          samples[kind][c] += times
  rows = {}
  print(f'\nForward+backward, float32, ms per call (median); prebuilt variant: {variant}\n')
  print('| shape (B, T, I, H) | prebuilt | -march=native | prebuilt / native |')
  print('|---|---:|---:|---:|')
  for c in configs:
    pre, nat = (statistics.median(samples[k][c]) for k in ('prebuilt', 'native'))
    rows[c] = {'shape': CONFIGS[c], 'prebuilt_ms': pre, 'native_ms': nat, 'ratio': pre / nat}
    rows[c]['calls'] = {k: len(samples[k][c]) for k in samples}
    b, t, i, h, _ = CONFIGS[c]
    print(f'| {c} ({b}, {t}, {i}, {h}) | {pre:.3f} | {nat:.3f} | {pre / nat:.3f} |')
  return {'variant': variant, 'rounds': args.rounds, 'configs': rows}


# ----------------------------------------------------------------------------- sizes


def _du(venv: Path) -> int:
  site = next((venv / 'lib').glob('python3*/site-packages'))
  return int(subprocess.run(['du', '-sk', site], capture_output=True, text=True).stdout.split()[0])


def _pip(venv: Path, *args):
  subprocess.run([venv / 'bin' / 'pip', 'install', '-q', *args], check=True)


def sizes(args) -> dict:
  with tempfile.TemporaryDirectory() as tmp:
    tmp = Path(tmp)
    wheel = args.wheel
    if not wheel:
      subprocess.run(
        [sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps', '-w', tmp / 'dist', ROOT],
        check=True,
      )
      wheel = str(next((tmp / 'dist').glob('*.whl')))
    subprocess.run([sys.executable, '-m', 'venv', tmp / 'empty'], check=True)
    empty = _du(tmp / 'empty')
    rows = []

    def step(venv, label, *pip_args, total=None):
      _pip(venv, *pip_args)
      now = _du(venv) - empty
      rows.append({'install': label, 'kib': now - (total or 0), 'total_kib': now})
      return now

    subprocess.run([sys.executable, '-m', 'venv', tmp / 'before'], check=True)
    _pip(tmp / 'before', *BEFORE)
    rows.append({'install': 'before: core (every dependency)', 'kib': _du(tmp / 'before') - empty})
    rows[-1]['total_kib'] = rows[-1]['kib']
    subprocess.run([sys.executable, '-m', 'venv', tmp / 'after'], check=True)
    after = tmp / 'after'
    total = step(after, 'after: core', wheel)
    for extra in ('train', 'plots', 'tensorboard'):
      total = step(after, f'+ [{extra}]', f'{wheel}[{extra}]', total=total)
    step(after, f'+ [torch] ({TORCH_CPU}, CPU build)', TORCH_CPU, total=total)
  print('\nInstall size (du of site-packages, MiB); after: extras added one by one\n')
  print('| install | adds | total |')
  print('|---|---:|---:|')
  for r in rows:
    print(f'| {r["install"]} | {r["kib"] / 1024:.0f} | {r["total_kib"] / 1024:.0f} |')
  return {'rows': rows}


def main(argv=None):
  args = parse_args(argv)
  if args.child:
    print(json.dumps(child(json.loads(args.child), args.configs.split(','), args.budget)))
    return
  result = {'machine': platform.processor() or platform.machine(), 'cpus': os.cpu_count()}
  if args.part in ('speed', 'both'):
    result['speed'] = speed(args)
  if args.part in ('sizes', 'both'):
    result['sizes'] = sizes(args)
  path = Path(args.json)
  if path.exists() and args.part != 'both':  # keep the other part's last figures
    result = {**json.loads(path.read_text()), **result}
  path.write_text(json.dumps(result, indent=1) + '\n')
  print(f'\nwrote {path}')


if __name__ == '__main__':
  main()
