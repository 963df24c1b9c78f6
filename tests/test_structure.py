"""The package's shape: no import cycles, a task-agnostic core, a lazy curated face."""

import ast
import pathlib
import re
import subprocess
import sys

import pytest

import bilstm_jax
from tests.utils import ROOT

PACKAGE = pathlib.Path(ROOT) / 'bilstm_jax'


def _module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(ROOT).with_suffix('').parts
  return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def _imports() -> dict[str, set[str]]:
  """{module: the bilstm_jax modules it imports}, function-level imports included."""
  modules = {_module_name(p): p for p in PACKAGE.rglob('*.py')}
  graph = {}
  for name, path in modules.items():
    deps = set()
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.Import):
        deps |= {a.name for a in node.names if a.name.startswith('bilstm_jax')}
      elif (
        isinstance(node, ast.ImportFrom) and node.module and node.module.startswith('bilstm_jax')
      ):
        for alias in node.names:
          sub = f'{node.module}.{alias.name}'
          deps.add(sub if sub in modules else node.module)
    # A package's __init__ is not a dependency of its own submodules' imports.
    graph[name] = {d for d in deps if d in modules and d != name}
  return graph


def test_no_import_cycles():
  graph = _imports()
  done, stack = set(), []

  def visit(node):
    if node in stack:
      raise AssertionError('import cycle: ' + ' -> '.join([*stack[stack.index(node) :], node]))
    if node in done:
      return
    stack.append(node)
    for dep in sorted(graph[node]):
      if dep != 'bilstm_jax':  # the lazy face imports nothing at import time
        visit(dep)
    stack.pop()
    done.add(node)

  for node in sorted(graph):
    visit(node)


# (modules under this prefix, the bilstm_jax modules they must never import): the imports
# flow one way, training -> tasks -> models -> heads/nn, and data never reaches the model
# side.
LAYER_RULES = (
  (
    'bilstm_jax.nn',
    ('bilstm_jax.training', 'bilstm_jax.tasks', 'bilstm_jax.data', 'bilstm_jax.app'),
  ),
  ('bilstm_jax.nn', ('bilstm_jax.models', 'bilstm_jax.heads')),
  ('bilstm_jax.heads', ('bilstm_jax.training', 'bilstm_jax.app', 'bilstm_jax.models')),
  # Models are built from their typed configs and the sizes a task passes them.
  (
    'bilstm_jax.models',
    (
      'bilstm_jax.training',
      'bilstm_jax.tasks',
      'bilstm_jax.data',
      'bilstm_jax.app',
      'bilstm_jax.ensembles',
    ),
  ),
  ('bilstm_jax.data', ('bilstm_jax.nn', 'bilstm_jax.tasks')),
  ('bilstm_jax.tasks', ('bilstm_jax.training', 'bilstm_jax.app')),
  # Ensembles build on training; an ensemble's run registers how it loads (ensembles.trained).
  ('bilstm_jax.training', ('bilstm_jax.ensembles', 'bilstm_jax.app')),
)


def _under(name: str, prefix: str) -> bool:
  return name == prefix or name.startswith(prefix + '.')


def test_layers_import_one_way():
  graph = _imports()
  broken = [
    f'{name} imports {dep}'
    for prefix, banned in LAYER_RULES
    for name, deps in sorted(graph.items())
    if _under(name, prefix)
    for dep in sorted(deps)
    if any(_under(dep, b) for b in banned)
  ]
  assert not broken, broken


def test_loop_ensembles_and_inference_name_no_task():
  words = ['masked_mse', 'target_variance', 'targets', 'regression', 'tagging',
           'classification', 'seed_noise', 'bidir_window']  # fmt: skip
  paths = [
    PACKAGE / 'training' / 'loop.py',
    PACKAGE / 'training' / 'program.py',
    PACKAGE / 'training' / 'steps.py',
    PACKAGE / 'training' / 'inference.py',
    *sorted((PACKAGE / 'ensembles').glob('*.py')),
  ]
  for path in paths:
    text = path.read_text()
    found = [w for w in words if re.search(rf'\b{w}\b', text, re.I)]
    assert not found, f'{path.relative_to(ROOT)} names {found}'


MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 100  # in the packages below, nested functions counted with their own


def test_no_module_over_the_size_limit():
  assert MAX_MODULE_LINES == 400
  sizes = {p.relative_to(ROOT): len(p.read_text().splitlines()) for p in PACKAGE.rglob('*.py')}
  assert not {p: n for p, n in sizes.items() if n > MAX_MODULE_LINES}, sizes


def _function_lengths(source: str) -> dict[str, int]:
  """{'line name': lines} of every function and method in `source`, nested ones too; a
  function's lines include those of the functions nested in it."""
  return {
    f'{node.lineno} {node.name}': node.end_lineno - node.lineno + 1
    for node in ast.walk(ast.parse(source))
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
  }


def test_no_function_over_100_lines_in_training_and_ensembles():
  lengths = {}
  for package in ('training', 'ensembles'):
    for path in sorted((PACKAGE / package).rglob('*.py')):
      found = _function_lengths(path.read_text())
      lengths.update({f'{path.relative_to(ROOT)}:{k}': n for k, n in found.items()})
  assert len(lengths) > 50  # the walk found the packages' functions
  too_long = {name: n for name, n in lengths.items() if n > MAX_FUNCTION_LINES}
  assert not too_long, too_long


def test_a_function_counts_the_functions_nested_in_it():
  body = '\n'.join(f'    x{i} = {i}' for i in range(99))
  source = f'def outer():\n  def inner():\n{body}\n  return inner\n'
  assert _function_lengths(source) == {'1 outer': 102, '2 inner': 100}


@pytest.mark.subprocess
def test_the_public_api_resolves_and_imports_lazily():
  for name in bilstm_jax.__all__:
    assert getattr(bilstm_jax, name) is not None, name
  assert bilstm_jax.interop.lstm_from_torch is bilstm_jax.lstm_from_torch
  assert callable(bilstm_jax.runtime.tune_cpu)
  code = 'import sys, bilstm_jax; print(sorted(m for m in ("jax", "flax") if m in sys.modules))'
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=ROOT)
  assert out.stdout.strip() == '[]', out.stdout + out.stderr
