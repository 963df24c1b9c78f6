"""The CPU kernel (`bilstm_jax.nn.native`): its variants, the build cache, and the fallback."""

import functools
import os
import subprocess
import sys
import time

import pytest

from bilstm_jax.nn import native
from bilstm_jax.nn.native import _build
from tests.utils import ROOT

SCRIPT = """
import warnings, jax, jax.numpy as jnp
from bilstm_jax import BiLSTM
from bilstm_jax.nn import native
x = jnp.ones((2, 3, 4))
model = BiLSTM(5)
with warnings.catch_warnings(record=True) as caught:
  warnings.simplefilter('always')
  params = model.init(jax.random.key(0), x)
  y, _ = model.apply(params, x)
  jax.grad(lambda p: model.apply(p, x)[0].sum())(params)
text = jax.jit(model.apply).lower(params, x).as_text()
print('KERNEL' if 'bilstm_jax_lstm_fwd' in text else 'SCAN', y.shape, native.variant())
print('\\n'.join(str(w.message) for w in caught if 'bilstm_jax' in str(w.message)))
"""


def _env(cache, **overrides):
  env = {k: v for k, v in os.environ.items() if not k.startswith('BILSTM_JAX_')}
  return {**env, 'BILSTM_JAX_CACHE': str(cache), **overrides}


def _run(cache, script=SCRIPT, **overrides):
  """Runs `script` in a fresh process with its own kernel cache."""
  env = _env(cache, **overrides)
  return subprocess.run(
    [sys.executable, '-c', script],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
    check=True,
  ).stdout


@pytest.mark.subprocess
def test_builds_once_into_the_cache_then_reuses_it(tmp_path):
  out = _run(tmp_path / 'cache')
  assert out.startswith('KERNEL (2, 3, 10) native')  # no variant is prebuilt in a checkout
  built = list((tmp_path / 'cache').glob('*.so'))
  assert len(built) == 1 and built[0].name.startswith('lstm_cpu-native-')  # no temporary
  assert built[0].stat().st_mode & 0o777 == 0o644  # other users of a shared cache load it
  assert (tmp_path / 'cache').stat().st_mode & 0o777 == 0o755
  stamp = built[0].stat().st_mtime_ns
  time.sleep(0.01)
  assert _run(tmp_path / 'cache').startswith('KERNEL')
  assert len(list((tmp_path / 'cache').glob('*.so'))) == 1  # loaded, not rebuilt
  assert built[0].stat().st_mtime_ns > stamp  # marked used: pruning keeps it


@pytest.mark.subprocess
@pytest.mark.slow
def test_concurrent_first_users_build_once_and_cxx_may_carry_arguments(tmp_path):
  """Three processes start at once on an empty cache: one compiles, under the file lock, and
  the others load its library. $CXX is a command with arguments (like `ccache g++`)."""
  log = tmp_path / 'compiles'
  wrapper = tmp_path / 'cxx.sh'
  wrapper.write_text(f'case "$*" in *-shared*) echo x >> {log};; esac\nexec "$@"\n')
  env = _env(tmp_path / 'cache', CXX=f'sh {wrapper} c++')
  procs = [
    subprocess.Popen([sys.executable, '-c', SCRIPT], cwd=ROOT, env=env, stdout=subprocess.PIPE)
    for _ in range(3)
  ]
  outs = [p.communicate(timeout=300)[0].decode() for p in procs]
  assert all(out.startswith('KERNEL (2, 3, 10) native') for out in outs), outs
  assert log.read_text() == 'x\n'


@pytest.mark.subprocess
def test_without_a_compiler_auto_falls_back_to_the_scan_with_one_warning(tmp_path):
  out = _run(tmp_path / 'cache', CXX='no-such-compiler')
  assert out.startswith('SCAN (2, 3, 10) None')
  warning = out.splitlines()[1:]
  assert len([w for w in warning if w]) == 1, out  # init, apply and grad: one warning
  assert "C++ compiler 'no-such-compiler' not found" in warning[0]
  assert "using impl='fused'" in warning[0]


def test_a_variant_this_cpu_cannot_run_or_an_unknown_name_is_refused(monkeypatch):
  monkeypatch.setenv('BILSTM_JAX_KERNEL', 'no-such-variant')
  loaded = native._try_load()  # what info() runs once per process; no library is loaded
  assert loaded.variant is None and 'is not one of: auto, native, off' in loaded.error
  monkeypatch.setenv('BILSTM_JAX_KERNEL', 'off')
  assert 'turned off' in native._try_load().error
  unrunnable = [v for v in _build.machine_variants() if v not in _build.runnable()]
  if unrunnable:
    monkeypatch.setenv('BILSTM_JAX_KERNEL', unrunnable[0].name)
    assert 'this CPU cannot run' in native._try_load().error


def test_a_prebuilt_library_that_fails_to_load_falls_back_to_a_build(monkeypatch, tmp_path):
  best = _build.runnable()[0]
  broken = tmp_path / best.filename
  broken.write_bytes(b'not a shared library')
  built = tmp_path / 'built.so'
  loaded = []

  def register(path):
    if path == broken:
      raise OSError(f'{path}: invalid ELF header')
    loaded.append(path)

  monkeypatch.delenv('BILSTM_JAX_KERNEL', raising=False)
  monkeypatch.delenv('BILSTM_JAX_CXXFLAGS', raising=False)
  monkeypatch.setattr(native, 'shipped', lambda: {best.name: broken})
  monkeypatch.setattr(native, '_compile', lambda variant: built)
  monkeypatch.setattr(native, '_register', register)
  info = native._try_load()
  assert (info.variant, info.prebuilt, info.path, loaded) == ('native', False, str(built), [built])
  assert f'the prebuilt {best.name} library failed' in info.error


def test_variants_are_chosen_by_the_cpu_features():
  def names(flags, machine='x86_64'):
    return [v.name for v in _build.runnable(frozenset(flags.split()), machine)]

  v3 = 'cx16 lahf_lm popcnt pni sse4_1 sse4_2 ssse3 avx avx2 bmi1 bmi2 f16c fma abm movbe xsave'
  v4 = v3 + ' avx512f avx512bw avx512cd avx512dq avx512vl'
  assert names('') == ['x86-64']
  assert names(v3) == ['x86-64-v3', 'x86-64']
  assert names(v4) == ['x86-64-v4', 'x86-64-v3', 'x86-64']
  assert names(v4 + ' avx512_bf16')[0] == 'x86-64-v4-bf16'
  assert names(v4.replace(' fma', '')) == ['x86-64']  # AVX-512 but no FMA: no level above
  assert names('fp asimd evtstrm', 'aarch64') == ['armv8-a']


def test_the_cache_key_covers_the_arm_features_line(tmp_path, monkeypatch):
  cpuinfo = tmp_path / 'cpuinfo'
  cpuinfo.write_text(
    'processor\t: 0\nFeatures\t: fp asimd evtstrm aes crc32 atomics\nCPU part\t: 0xd0c\n\n'
    'processor\t: 1\nFeatures\t: fp asimd evtstrm aes crc32 atomics\nCPU part\t: 0xd0c\n'
  )
  lines = _build.cpu_lines(str(cpuinfo))
  assert lines == ['Features\t: fp asimd evtstrm aes crc32 atomics']
  assert 'atomics' in _build.cpu_features(lines)
  cxx = _build.compiler()
  keys = {}
  for features in ('fp asimd', 'fp asimd sve'):
    monkeypatch.setattr(_build, 'cpu_lines', lambda f=features: [f'Features\t: {f}'])
    keys[features] = native._cache_key(cxx, _build.NATIVE, [])
    assert native._cache_key(cxx, _build.VARIANTS[0], []) == native._cache_key(
      cxx, _build.VARIANTS[0], []
    )
  assert keys['fp asimd'] != keys['fp asimd sve']


def test_old_builds_are_pruned(tmp_path):
  now = time.time()
  ages = {f'lstm_cpu-native-{i:02d}.so': i * 3600 for i in range(20)}  # 0 h .. 19 h old
  ages['lstm_cpu-x86-64-v3-old.so'] = 40 * 24 * 3600  # unused for 40 days
  ages['.tmp-dead.so'] = 2 * 3600  # a build that died two hours ago
  ages['.tmp-live.so'] = 10  # one running now
  for name, age in ages.items():
    (tmp_path / name).write_bytes(b'')
    os.utime(tmp_path / name, (now - age, now - age))
  keep = tmp_path / 'lstm_cpu-native-19.so'  # the one just loaded is never removed
  native._prune(tmp_path, keep=keep)
  left = sorted(p.name for p in tmp_path.iterdir())
  recent = [f'lstm_cpu-native-{i:02d}.so' for i in range(16)]
  assert left == sorted(['.tmp-live.so', keep.name, *recent])


PARITY = """
import hashlib, jax, jax.numpy as jnp, numpy as np
from bilstm_jax.nn import fused
from bilstm_jax.nn import native
from bilstm_jax.nn import recurrence
native.ensure_loaded()
worst = worst16 = 0.0
digest = hashlib.sha256()
def rel(a, b):
  return max(
    float(jnp.max(jnp.abs(x - y)) / jnp.maximum(jnp.max(jnp.abs(x)), 1e-6))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
  )
for d, (t, b, f, h) in [(2, (9, 13, 6, 20)), (1, (5, 3, 4, 5)), (2, (4, 16, 3, 32))]:
  ks = jax.random.split(jax.random.key(d + t), 7)
  mask = jax.random.bernoulli(ks[1], 0.7, (t, b))
  args = (
    jax.random.normal(ks[0], (t, b, f)), 0.4 * jax.random.normal(ks[5], (d, f, 4 * h)),
    0.4 * jax.random.normal(ks[6], (d, 4 * h)), 0.4 * jax.random.normal(ks[2], (d, h, 4 * h)),
    jax.random.normal(ks[3], (d, b, h)), jax.random.normal(ks[4], (d, b, h)),
  )
  def loss(layer, *a, dtype=None):
    hs, (h_n, c_n) = layer(a[0], mask, *a[1:], dtype)
    return jnp.sum(jnp.sin(hs)) + jnp.sum(h_n * c_n)
  def grads(layer, dtype=None):
    return jax.grad(loss, range(1, 7))(layer, *args, dtype=dtype)
  ours = grads(fused.lstm_layer_native)
  worst = max(worst, rel(grads(recurrence.lstm_layer_reference), ours))
  for leaf in jax.tree.leaves(ours):
    digest.update(np.asarray(leaf).tobytes())
  bf16 = jnp.bfloat16  # against the scan with the same bfloat16 rounding
  worst16 = max(
    worst16, rel(grads(fused.lstm_layer_fused, bf16), grads(fused.lstm_layer_native, bf16))
  )
print(f'WORST {worst:.3e} WORST16 {worst16:.3e} VARIANT {native.variant()}')
print(f'F32 {digest.hexdigest()}')
"""


@pytest.fixture(scope='module')
def shared_cache(tmp_path_factory):
  """One kernel cache for the variant tests: each variant is compiled once."""
  return tmp_path_factory.mktemp('kernels')


@functools.cache  # the bit-for-bit test reuses the parity tests' runs
def _parity(cache, variant):
  # The scan programs are the same for every variant: a shared XLA cache compiles them once
  # (the kernel itself is looked up by name in each process, so each run uses its variant).
  xla = {
    'JAX_COMPILATION_CACHE_DIR': str(cache / 'xla'),
    'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS': '0',
    'JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES': '0',
  }
  out = _run(cache, PARITY, BILSTM_JAX_KERNEL=variant, **xla).split()
  return dict(zip(out[::2], out[1::2], strict=True))


@pytest.mark.slow  # builds the kernel once per variant (about 30 s each)
@pytest.mark.parametrize('variant', [v.name for v in _build.runnable()])
def test_each_variant_this_cpu_runs_matches_autodiff(shared_cache, variant):
  """Each instruction-set variant (the wheel's, built here with the same command) gives the
  same gradients as autodiff through a scan, and in bfloat16 (float32 products of the
  rounded operands there) the same as the bfloat16 scan."""
  result = _parity(shared_cache, variant)
  assert result['VARIANT'] == variant
  assert float(result['WORST']) < 1e-5 and float(result['WORST16']) < 2e-4, result


@pytest.mark.slow
@pytest.mark.skipif(
  not {'x86-64-v4', 'x86-64-v4-bf16'} <= {v.name for v in _build.runnable()},
  reason='needs AVX512-BF16',
)
def test_the_bf16_variant_computes_float32_bit_for_bit_like_avx512(shared_cache):
  """The AVX512-BF16 instructions only serve bf16=True: float32 results are the same bits."""
  assert _parity(shared_cache, 'x86-64-v4')['F32'] == _parity(shared_cache, 'x86-64-v4-bf16')['F32']


def test_export_traces_the_portable_scan_even_for_impl_native():
  """jax.export cannot serialize the kernel's custom call: `native.disabled()` (which the
  run's export uses) swaps an explicit impl='native' for 'fused', as it does for 'auto'."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  from jax import export as jax_export

  from bilstm_jax import BiLSTM

  model = BiLSTM(4, impl='native')
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 5, 3)), jnp.float32)
  lengths = jnp.array([5, 2], jnp.int32)
  variables = model.init(jax.random.key(0), x, lengths)
  with native.disabled():
    exported = jax_export.export(jax.jit(lambda x, n: model.apply(variables, x, n)[0]))(x, lengths)
  assert 'custom_call' not in exported.mlir_module()
  np.testing.assert_allclose(
    exported.call(x, lengths), model.apply(variables, x, lengths)[0], rtol=1e-5, atol=1e-6
  )
