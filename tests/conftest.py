"""Shared fixtures: the shared real checkpoints, their ports, and torch models with random weights."""

import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("JAXVAE_SHARED", os.path.join(REPO, "..", "shared"))
BETA_VAE_DIR = os.path.join(SHARED, "checkpoints", "beta-vae")
PARITY_TOL = 1e-5  # fp32 max abs difference against the original framework.


def shared_file(name: str) -> str:
  """A file under ../shared/checkpoints/beta-vae; skip without it, but fail under CI=true."""
  path = os.path.join(BETA_VAE_DIR, name)
  if not os.path.exists(path):
    message = (f"{path} is absent: the shared published checkpoints are needed "
               "(set JAXVAE_SHARED to the folder that holds checkpoints/beta-vae)")
    if os.environ.get("CI", "").lower() == "true":
      pytest.fail(message)
    pytest.skip(message)
  return path


def run_cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
  """Runs `python *args` in the repo root, as a user would."""
  return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True,
                        timeout=timeout, env={**os.environ, **(env or {})})


def port_verified(model: str, source: str, out) -> tuple[subprocess.CompletedProcess, str]:
  """`python -m port --model=MODEL --source=SOURCE --out=OUT --verify`: (the run, OUT)."""
  return run_cli("-m", "port", f"--model={model}", f"--source={source}", f"--out={out}",
                 "--verify"), str(out)


def closed_url(filename: str) -> str:
  """An http URL of `filename` on a local port on which nothing listens (an offline host)."""
  import socket  # pylint: disable=import-outside-toplevel
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return f"http://127.0.0.1:{s.getsockname()[1]}/{filename}"


@pytest.fixture(scope="session", autouse=True)
def _private_caches(tmp_path_factory):
  """Every cache (downloads, ports, XLA) in a temporary folder, for this process and the CLI runs
  it starts: the tests never write the user's ~/.cache/jaxvae."""
  patch = pytest.MonkeyPatch()
  patch.setenv("JAXVAE_CACHE", str(tmp_path_factory.mktemp("jaxvae-cache")))
  patch.delenv("JAXVAE_COMPILATION_CACHE", raising=False)
  patch.delenv("JAXVAE_MIRROR", raising=False)
  yield
  patch.undo()


@pytest.fixture(scope="session")
def ported_dir(tmp_path_factory):
  """A function name -> Orbax dir of the shared checkpoint `name` (l200-100.pt, l32-100.pt)."""
  from port import api
  cache = {}

  def get(name: str) -> str:
    if name not in cache:
      out = str(tmp_path_factory.mktemp("ported") / name.replace(".pt", ""))
      api.port("betavae", shared_file(name), out)
      cache[name] = out
    return cache[name]
  return get


@pytest.fixture(scope="session")
def betavae_l200(ported_dir):
  from jaxvae import checkpoint
  return checkpoint.load(ported_dir("l200-100.pt"))


@pytest.fixture(scope="session")
def portraits():
  """The bundled public-domain portraits, cropped for the Beta-VAE: [2, 64, 64, 3] in [0, 1]."""
  from jaxvae import data, models
  return data.load("", models.get_info("betavae").celeba_box).images


@pytest.fixture(scope="session")
def betavae_recons(betavae_l200, portraits):
  """Beta-VAE l200 reconstructions of real faces: np.float32 [2, 64, 64, 3] in [0, 1]."""
  from jaxvae import sampling
  return np.asarray(sampling.reconstruct(betavae_l200.model, betavae_l200.variables, portraits))
