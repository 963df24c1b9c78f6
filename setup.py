"""Builds the wheel: the pure-Python package, the shipped configs, and the CPU kernel.

Why setuptools and not scikit-build-core (JAX's FFI example) or a setuptools `Extension`:
the kernel is not a Python extension module but a plain shared library that
`bilstm_jax.nn.native` loads with ctypes and registers as an XLA FFI target, built by one
compiler command. That command lives in `bilstm_jax/nn/native/_build.py`, which this file
and the first-use build both run, so a prebuilt variant and the same variant built on a
user's machine come from identical flags (and give identical numbers); CMake would hold a
second copy of the flags. An `Extension` would add Python's own compile flags and, built
once per variant from one source, share one object file path. Editable installs
(`pip install -e .`) stay plain setuptools ones that build nothing and compile on first
use, and the build needs only setuptools and jax (for `jax.ffi.include_dir()`).

The library does not use Python's C API, so the wheel is tagged `py3-none-<platform>`:
one wheel per platform serves every Python version. Set BILSTM_JAX_NO_PREBUILT=1 to build
a wheel without the kernel (it then compiles on first use).
"""

import importlib.util
import os
import sys
from pathlib import Path

from setuptools import Distribution, find_packages, setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build_py import build_py

NATIVE = Path(__file__).parent / 'bilstm_jax' / 'nn' / 'native'


def _load_build_helpers():
  """bilstm_jax/nn/native/_build.py without importing bilstm_jax (which needs flax)."""
  spec = importlib.util.spec_from_file_location('_bilstm_jax_build', NATIVE / '_build.py')
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module  # its dataclasses look their module up there
  spec.loader.exec_module(module)
  return module


def _no_prebuilt() -> bool:
  return os.environ.get('BILSTM_JAX_NO_PREBUILT', '') not in ('', '0')


class BuildPyWithKernel(build_py):
  """build_py, then every instruction-set variant of this architecture into build_lib."""

  def run(self):
    super().run()
    if self.editable_mode or _no_prebuilt():
      return
    import jax

    helpers = _load_build_helpers()
    out = Path(self.build_lib) / 'bilstm_jax' / 'nn' / 'native'
    out.mkdir(parents=True, exist_ok=True)
    names = helpers.build_prebuilt(out, jax.ffi.include_dir(), jax.__version__)
    print(f'bilstm_jax: prebuilt CPU kernel variants: {", ".join(names) or "none"}')


class KernelDistribution(Distribution):
  """Holds machine code (so installs to platlib, in a platform wheel) unless told not to."""

  def has_ext_modules(self):
    return not _no_prebuilt()


class BdistWheelPlatform(bdist_wheel):
  """A platform wheel for any Python 3, py3-none-<platform>: the kernel uses no Python API."""

  def get_tag(self):
    python, abi, platform = super().get_tag()
    return (python, abi, platform) if self.root_is_pure else ('py3', 'none', platform)


setup(
  # The configs stay at the repository's top level (train.py names them by path) and ship
  # as bilstm_jax.configs, so an installed `bilstm-jax --config=default` finds them; they
  # import one another under that name, which an editable install maps to configs/ too.
  packages=[*find_packages(include=['bilstm_jax', 'bilstm_jax.*']), 'bilstm_jax.configs'],
  package_dir={'bilstm_jax.configs': 'configs'},
  distclass=KernelDistribution,
  cmdclass={'build_py': BuildPyWithKernel, 'bdist_wheel': BdistWheelPlatform},
)
