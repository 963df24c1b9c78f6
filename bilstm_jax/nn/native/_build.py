"""How `lstm_cpu.cc` is compiled: the instruction-set variants and the one compiler command.

Standard library only: `setup.py` loads this file by path to build the variants into the
wheel, and `bilstm_jax.nn.native` imports it to build on first use, so a kernel built here
and one shipped in a wheel come from the same command and, for the same variant, compute
the same numbers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import platform
import re
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

SOURCE = Path(__file__).with_name('lstm_cpu.cc')
FLAGS = ('-O3', '-std=c++17', '-shared', '-fPIC', '-pthread')
# The prebuilt variants in a wheel sit beside the source, described by this file (the
# source's hash: a checkout whose .cc changed since must not load them).
MANIFEST = 'prebuilt.json'


@dataclasses.dataclass(frozen=True)
class Variant:
  """One instruction-set build of the kernel.

  name: what `native.info()` reports and `$BILSTM_JAX_KERNEL` selects.
  machine: `platform.machine()` of the CPUs it runs on.
  flags: the compiler flags that select the instruction set.
  needs: the /proc/cpuinfo `flags` (x86) or `Features` (ARM) words a CPU must list.
  """

  name: str
  machine: str
  flags: tuple[str, ...]
  needs: frozenset[str] = frozenset()

  @property
  def filename(self) -> str:
    return f'lstm_cpu-{self.name}.so'


# GCC >= 11 / clang >= 12 know the x86-64-vN levels. The kernel's code paths are plain
# vector code (8 lanes, SSE pairs), AVX (8 lanes, FMA), AVX-512 (16 lanes) and AVX512-BF16
# (bfloat16 pairs); each variant below is the oldest instruction set that takes one path.
_V2 = frozenset(['cx16', 'lahf_lm', 'popcnt', 'pni', 'sse4_1', 'sse4_2', 'ssse3'])
_V3 = _V2 | frozenset(['avx', 'avx2', 'bmi1', 'bmi2', 'f16c', 'fma', 'abm', 'movbe', 'xsave'])
_V4 = _V3 | frozenset(['avx512f', 'avx512bw', 'avx512cd', 'avx512dq', 'avx512vl'])
VARIANTS = (  # best first: the first one a CPU can run is the one it loads
  Variant('x86-64-v4-bf16', 'x86_64', ('-march=x86-64-v4', '-mavx512bf16'), _V4 | {'avx512_bf16'}),
  Variant('x86-64-v4', 'x86_64', ('-march=x86-64-v4',), _V4),
  Variant('x86-64-v3', 'x86_64', ('-march=x86-64-v3',), _V3),
  Variant('x86-64', 'x86_64', ('-march=x86-64',)),
  # NEON (asimd) is part of armv8-a, and the kernel has no path for later ARM extensions.
  Variant('armv8-a', 'aarch64', ('-march=armv8-a',)),
)
NATIVE = Variant('native', platform.machine(), ('-march=native',))


def machine_variants(machine: str | None = None) -> tuple[Variant, ...]:
  """The variants built for (and loadable on) this machine's architecture, best first."""
  machine = machine or platform.machine()
  return tuple(v for v in VARIANTS if v.machine == machine)


def cpu_lines(cpuinfo: str = '/proc/cpuinfo') -> list[str]:
  """The distinct `flags` (x86) and `Features` (ARM) lines of /proc/cpuinfo, sorted."""
  try:
    with open(cpuinfo) as f:
      lines = {line.strip() for line in f if line.startswith(('flags', 'Features'))}
  except OSError:
    return []
  return sorted(lines)


def cpu_features(lines: list[str] | None = None) -> frozenset[str]:
  """The feature words every core of this CPU reports (empty where /proc/cpuinfo is not)."""
  lines = cpu_lines() if lines is None else lines
  sets = [frozenset(line.split(':', 1)[-1].split()) for line in lines]
  return frozenset.intersection(*sets) if sets else frozenset()


def runnable(features: frozenset[str] | None = None, machine: str | None = None):
  """The variants this CPU (or one with `features` on `machine`) can run, best first; only
  the architecture's baseline where the CPU's features are unknown."""
  features = cpu_features() if features is None else features
  return tuple(v for v in machine_variants(machine) if v.needs <= features)


def compiler() -> list[str]:
  """`$CXX` split like a shell would (`CXX="ccache g++"`), else `c++`; raises `OSError`
  when the program is not found."""
  cxx = shlex.split(os.environ.get('CXX') or 'c++')
  path = shutil.which(cxx[0]) if cxx else None
  if path is None:
    raise OSError(f'C++ compiler {cxx[0] if cxx else ""!r} not found (set CXX, or install g++)')
  return [path, *cxx[1:]]


def compiler_version(cxx: list[str]) -> str:
  return subprocess.run([*cxx, '--version'], capture_output=True, text=True).stdout


def command(cxx: list[str], variant: Variant, include_dir: str, out: str, extra=()) -> list[str]:
  """The compiler command that builds `variant` of the kernel into `out`."""
  return [*cxx, *FLAGS, *variant.flags, *extra, f'-I{include_dir}', str(SOURCE), '-o', out]


def ffi_api_version(include_dir: str) -> list[int]:
  """[major, minor] of the XLA FFI headers in include_dir. A library built against minor m
  needs a jaxlib whose FFI is at least m (XLA keeps accepting older ones)."""
  text = (Path(include_dir) / 'xla' / 'ffi' / 'api' / 'c_api.h').read_text()
  found = re.findall(r'#define XLA_FFI_API_(MAJOR|MINOR) (\d+)', text)
  version = dict(found)
  return [int(version['MAJOR']), int(version['MINOR'])]


def source_hash() -> str:
  return hashlib.sha256(SOURCE.read_bytes()).hexdigest()


def compile_to(
  target: Path, variant: Variant, include_dir: str, cxx: list[str] | None = None, extra=()
) -> None:
  """Compiles `variant` into `target` atomically (a concurrent reader sees all of it or
  nothing), readable by everyone (0o644). Raises `OSError` with the compiler's message."""
  cxx = cxx or compiler()
  fd, tmp = tempfile.mkstemp(prefix='.tmp-', suffix='.so', dir=target.parent)
  os.close(fd)
  try:
    cmd = command(cxx, variant, include_dir, tmp, extra)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
      raise OSError(f'compiling {SOURCE.name} failed:\n{shlex.join(cmd)}\n{proc.stderr}')
    os.chmod(tmp, 0o644)
    os.replace(tmp, target)
  finally:
    if os.path.exists(tmp):
      os.unlink(tmp)


def build_prebuilt(out_dir: Path, include_dir: str, jax_version: str) -> list[str]:
  """Wheel build: every variant of this architecture into out_dir, plus the manifest.
  Returns the variant names (none on an architecture without variants)."""
  import concurrent.futures
  import json

  variants = machine_variants()
  cxx = compiler()
  with concurrent.futures.ThreadPoolExecutor(max(1, min(len(variants), os.cpu_count() or 1))) as ex:
    jobs = [ex.submit(compile_to, out_dir / v.filename, v, include_dir, cxx) for v in variants]
    for job in jobs:
      job.result()
  manifest = {
    'source_sha256': source_hash(),
    'jax': jax_version,
    'ffi_api': ffi_api_version(include_dir),
    'compiler': compiler_version(cxx).partition('\n')[0],
    'variants': [v.name for v in variants],
  }
  (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=1) + '\n')
  return manifest['variants']
