"""Every public name has a docstring, and the API reference (docs/api/) covers every one.

The public names are those of `bilstm_jax.__all__` and of each documented package: its
`__all__` where its `__init__.py` has one (`nn`, `models`, `tasks`, `interop`), else every public
submodule's own functions and classes (`training.steps.train_step`). A class's public
methods and properties count too, and so do the modules themselves.
"""

import importlib
import inspect
import pathlib
import pkgutil
import re
import types

import bilstm_jax
from tests.utils import ROOT

PACKAGES = (
  'nn',
  'models',
  'heads',
  'tasks',
  'training',
  'ensembles',
  'parallel',
  'interop',
  'data',
)
DOCS = pathlib.Path(ROOT) / 'docs' / 'api'


def _public_submodules(package: types.ModuleType) -> list[types.ModuleType]:
  """The package's submodules whose names do not start with an underscore."""
  return [
    importlib.import_module(f'{package.__name__}.{info.name}')
    for info in pkgutil.iter_modules(package.__path__)
    if not info.name.startswith('_')
  ]


def _defined_here(module: types.ModuleType) -> dict[str, object]:
  """{name: object} of the public functions and classes a module defines (not imports)."""
  return {
    name: value
    for name, value in vars(module).items()
    if not name.startswith('_')
    and callable(value)
    and getattr(value, '__module__', None) == module.__name__
  }


def _public_names() -> dict[str, object]:
  """{dotted name: object} of every public module, function and class."""
  names = {f'bilstm_jax.{n}': getattr(bilstm_jax, n) for n in bilstm_jax.__all__}
  for short in PACKAGES:
    package = importlib.import_module(f'bilstm_jax.{short}')
    names[package.__name__] = package
    if hasattr(package, '__all__'):
      names |= {f'{package.__name__}.{n}': getattr(package, n) for n in package.__all__}
      continue
    for module in _public_submodules(package):
      names[module.__name__] = module
      names |= {f'{module.__name__}.{n}': v for n, v in _defined_here(module).items()}
  return names


def _members(cls: type) -> dict[str, object]:
  """{name: function} of a class's public methods and properties, defined in the class."""
  members = {}
  for name, value in vars(cls).items():
    if name.startswith('_') and name != '__call__':
      continue
    if isinstance(value, property):
      value = value.fget
    elif isinstance(value, staticmethod | classmethod):
      value = value.__func__
    if inspect.isfunction(value):
      members[name] = value
  return members


def _where(name: str, value: object) -> str:
  """Where `value` is defined (`bilstm_jax.heads.crf.CRF`), which is where to document it."""
  qualname = getattr(value, '__qualname__', None)
  return f'{value.__module__}.{qualname}' if qualname else name


def _undocumented() -> list[str]:
  missing = []
  for name, value in _public_names().items():
    if isinstance(value, str | dict | tuple | int | float):
      continue  # constants: __version__, tasks.TASKS
    where = _where(name, value)
    if not (value.__doc__ or '').strip():
      missing.append(where)
    if inspect.isclass(value) and value.__module__.startswith('bilstm_jax'):
      missing += [
        f'{where}.{m}' for m, f in _members(value).items() if not (f.__doc__ or '').strip()
      ]
  return sorted(set(missing))


def test_every_public_name_has_a_docstring():
  missing = _undocumented()
  assert not missing, f'{len(missing)} public names without a docstring:\n' + '\n'.join(missing)


def _directives(page: str) -> set[str]:
  return set(re.findall(r'^::: (\S+)', (DOCS / page).read_text(), re.M))


def test_the_api_reference_has_a_directive_for_every_public_name_or_module():
  for short in PACKAGES:
    package = importlib.import_module(f'bilstm_jax.{short}')
    directives = _directives(f'{short}.md')
    if hasattr(package, '__all__'):
      wanted = {f'{package.__name__}.{n}' for n in package.__all__}
    else:
      wanted = {m.__name__ for m in _public_submodules(package)}
    assert not wanted - directives, f'docs/api/{short}.md misses {sorted(wanted - directives)}'


def test_the_api_reference_lists_every_top_level_name():
  page = (DOCS / 'bilstm_jax.md').read_text()
  directives = _directives('bilstm_jax.md')
  unlisted = []
  for name in bilstm_jax.__all__:
    value = getattr(bilstm_jax, name)
    if isinstance(value, str):
      continue  # __version__
    documented = {value.__module__, f'{value.__module__}.{name}'} & directives
    if not documented and f'[`{name}`][' not in page:
      unlisted.append(name)
  assert not unlisted, f'docs/api/bilstm_jax.md neither documents nor links {unlisted}'
