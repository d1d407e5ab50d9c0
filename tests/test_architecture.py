"""The shape of the code base (docs/ARCHITECTURE.md): no import cycles, small files and functions,
one mode list, the library free of torch and of `port` (but for the one lazy port of a published
name), and a model without a fast-path recipe served by its reference module."""

import ast
import os

import pytest

from conftest import REPO

PACKAGES = ("jaxvae", "port")
MAX_FILE_LINES = 350
MAX_FUNCTION_LINES = 60
# The library may import `port` in exactly one place: porting a published name on first use.
LAZY_PORT_IMPORTS = {"jaxvae.weights"}


def _modules() -> dict[str, str]:
  """Dotted module name -> file, for every .py file of the packages."""
  found = {}
  for package in PACKAGES:
    for root, _, files in os.walk(os.path.join(REPO, package)):
      for name in files:
        if name.endswith(".py"):
          rel = os.path.relpath(os.path.join(root, name), REPO)[:-3].replace(os.sep, ".")
          found[rel[: -len(".__init__")] if rel.endswith(".__init__") else rel] = os.path.join(
              root, name)
  return found


def _imports(module: str, path: str, known: set[str]) -> set[str]:
  """Modules of the packages that `module` imports anywhere in its file (function bodies too).

  `from a import b` counts as importing a.b when that is a module, else a."""
  tree = ast.parse(open(path).read())
  is_package = path.endswith("__init__.py")
  found = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:  # Relative imports (none expected, but resolved correctly).
        parts = module.split(".")[: len(module.split(".")) - node.level + is_package]
        base = ".".join(parts + ([base] if base else []))
      names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
    else:
      continue
    found |= {n for n in names if n.split(".")[0] in PACKAGES + ("torch",)}
  return found


def _graph():
  modules = _modules()
  known = set(modules)
  return {m: _imports(m, p, known) for m, p in modules.items()}


def test_no_module_imports_another_that_imports_it_back():
  graph = _graph()
  cycles, state, stack = [], {}, []

  def visit(m):
    state[m] = "open"
    stack.append(m)
    for n in sorted(graph.get(m, ())):
      if n not in graph:
        continue
      if state.get(n) == "open":
        cycles.append(stack[stack.index(n):] + [n])
      elif n not in state:
        visit(n)
    stack.pop()
    state[m] = "done"

  for m in sorted(graph):
    if m not in state:
      visit(m)
  assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_library_imports_neither_torch_nor_port():
  offenders = {m: sorted(i for i in imports if i.split(".")[0] in ("torch", "port"))
               for m, imports in _graph().items() if m.startswith("jaxvae")}
  offenders = {m: i for m, i in offenders.items() if i and m not in LAZY_PORT_IMPORTS}
  assert not offenders, offenders
  for m in LAZY_PORT_IMPORTS:  # ... and there only inside a function.
    tree = ast.parse(open(_modules()[m]).read())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert not any("port" in ast.unparse(n).split() for n in top), m


def test_files_and_functions_are_small():
  long_files, long_functions = [], []
  for module, path in _modules().items():
    source = open(path).read()
    if source.count("\n") > MAX_FILE_LINES:
      long_files.append(f"{module}: {source.count(chr(10))} lines")
    for node in ast.walk(ast.parse(source)):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        length = node.end_lineno - node.lineno + 1
        if length > MAX_FUNCTION_LINES:
          long_functions.append(f"{module}.{node.name}: {length} lines")
  assert not long_files and not long_functions, long_files + long_functions


def test_the_mode_list_is_defined_once():
  from jaxvae import modes, options
  assert tuple(modes.MODES) == options.MODES
  for mode in options.MODES:
    assert callable(modes.get(mode)), mode


def test_a_model_without_a_fast_recipe_runs_its_reference_module(monkeypatch):
  """Registering a model with no recipe: the API keeps its flax variables and the engine runs
  the module itself, with the same results as calling the module directly."""
  import jax
  import numpy as np
  from jaxvae import api, fast, models

  info = models.get_info("dfcvae")._replace(fast_recipe=None)
  monkeypatch.setitem(models.MODELS, "dfcvae", info)
  model = models.build("dfcvae", latent_dim=8)
  variables = models.init_variables(model, jax.random.key(0))
  vae = api.VAE("dfcvae", model, variables, chunk_size=3)
  assert vae.params is variables and fast.recipe(model) is None
  x = np.asarray(jax.random.uniform(jax.random.key(1), (5, 64, 64, 3)))
  mean, _ = model.apply(variables, x, method=model.encode)
  want = model.apply(variables, mean, method=model.decode)
  np.testing.assert_allclose(np.asarray(vae.reconstruct(x)), np.asarray(want), atol=1e-6)
  with pytest.raises(ValueError, match="no fast path"):
    fast.prepare(model, variables)
