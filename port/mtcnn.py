"""MTCNN (P-Net, R-Net, O-Net) from facenet-pytorch's wheel into one flax tree, with parity checks.

The weights are the three state_dicts inside the facenet-pytorch 2.6.0 wheel
(`facenet_pytorch/data/{pnet,rnet,onet}.pt`). The wheel is never installed (its pins, torch < 2.3
and numpy < 2, conflict with this project's): the published name `mtcnn` is fetched with
`pip download --no-deps`, its sha256 checked, and only the three files are read from the zip,
with torch.load(weights_only=True). Offline, $JAXVAE_MIRROR may hold the wheel (matched by
sha256); `--source` may also name a local copy of the wheel.
"""

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxvae import checkpoint, outputs
from jaxvae.faces import nets
from port import convert as port_convert
from port import sources, transforms
from port.tables import Entry, common

NAME = "mtcnn"
REQUIREMENT = "facenet-pytorch==2.6.0"
MEMBERS = {net: f"facenet_pytorch/data/{net}.pt" for net in ("pnet", "rnet", "onet")}
PIP_TIMEOUT_S = 300

Log = Callable[[str], None]


def _conv(module: str) -> list[Entry]:
  return common.conv(module, module)


def _dense(module: str) -> list[Entry]:
  return common.linear(module, module)


def _prelu(module: str) -> list[Entry]:
  return [Entry(f"params/{module}/weight", f"{module}.weight", transforms.identity)]


# flax path inside each net's variables <- key in that net's state_dict.
TABLES: dict[str, list[Entry]] = {
    "pnet": [*_conv("conv1"), *_prelu("prelu1"), *_conv("conv2"), *_prelu("prelu2"),
             *_conv("conv3"), *_prelu("prelu3"), *_conv("conv4_1"), *_conv("conv4_2")],
    "rnet": [*_conv("conv1"), *_prelu("prelu1"), *_conv("conv2"), *_prelu("prelu2"),
             *_conv("conv3"), *_prelu("prelu3"), *_dense("dense4"), *_prelu("prelu4"),
             *_dense("dense5_1"), *_dense("dense5_2")],
    "onet": [*_conv("conv1"), *_prelu("prelu1"), *_conv("conv2"), *_prelu("prelu2"),
             *_conv("conv3"), *_prelu("prelu3"), *_conv("conv4"), *_prelu("prelu4"),
             *_dense("dense5"), *_prelu("prelu5"), *_dense("dense6_1"), *_dense("dense6_2"),
             *_dense("dense6_3")],
}


def resolve(source: str) -> str:
  """A local wheel for `source`: the published name (cache, $JAXVAE_MIRROR, pip), URL or path."""
  pub = sources.PUBLISHED.get(source)
  return sources.resolve(source, _pip_download if pub and pub.model == NAME else None)[0]


def _pip_download(pub: sources.Published, dest: str) -> str:
  """`pip download --no-deps` of the pinned wheel into `dest`, sha256 checked; atomic."""
  os.makedirs(os.path.dirname(dest), exist_ok=True)
  with tempfile.TemporaryDirectory(prefix=".pip-", dir=os.path.dirname(dest)) as tmp:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-q", REQUIREMENT, "-d", tmp]
    try:
      done = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S,
                            check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
      raise sources.SourceError(f"could not run {' '.join(cmd[1:5])}: {e}") from e
    got = os.path.join(tmp, pub.filename)
    if done.returncode != 0 or not os.path.isfile(got):
      tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
      raise sources.SourceError(
          f"could not fetch {REQUIREMENT} with pip ({'; '.join(tail) or 'no wheel written'}). "
          f"Without network access, put {pub.filename} (sha256 {pub.sha256}) in a folder "
          "named by JAXVAE_MIRROR, or pass its path: python -m port --model=mtcnn --source=PATH")
    digest = outputs.sha256_file(got)
    if digest != pub.sha256:
      raise sources.SourceError(f"sha256 mismatch for {pub.filename} from pip: expected "
                                f"{pub.sha256}, got {digest}")
    os.replace(got, dest)
  return dest


class Wheel(NamedTuple):
  """What the port reads from the wheel, once."""
  state_dicts: dict[str, dict[str, np.ndarray]]  # {"pnet"|"rnet"|"onet": state_dict}
  member_sha256: dict[str, str]  # {member path: sha256 of its bytes}


def read_state_dicts(path: str, log: Log = lambda s: None) -> dict[str, dict[str, np.ndarray]]:
  """{"pnet"|"rnet"|"onet": state_dict} from the wheel at `path` (torch weights_only loads)."""
  return read(path, log).state_dicts


def read(path: str, log: Log = lambda s: None) -> Wheel:
  """AUX_NETWORKS entry point: the three state_dicts of the wheel at `path`, and the sha256 of
  each member they came from."""
  if not zipfile.is_zipfile(path):
    raise sources.SourceError(f"{path} is not a facenet-pytorch wheel (not a zip archive)")
  with zipfile.ZipFile(path) as wheel, tempfile.TemporaryDirectory() as tmp:
    missing = [m for m in MEMBERS.values() if m not in wheel.namelist()]
    if missing:
      raise sources.SourceError(f"{path} does not hold {', '.join(missing)}; is it the "
                                f"{REQUIREMENT} wheel?")
    state_dicts, digests = {}, {}
    for net, member in MEMBERS.items():
      extracted, data = os.path.join(tmp, f"{net}.pt"), wheel.read(member)
      with open(extracted, "wb") as f:
        f.write(data)
      state_dicts[net] = sources.load_state_dict(extracted, log)
      digests[member] = hashlib.sha256(data).hexdigest()
  return Wheel(state_dicts, digests)


def convert_state_dicts(state_dicts: dict[str, dict[str, np.ndarray]]) -> dict:
  """The flax variables {"pnet"|"rnet"|"onet": {"params": ...}}; every problem named at once."""
  abstract = nets.abstract_variables()
  variables, problems = {}, []
  for net in nets.NETS:
    flat, _, net_problems = port_convert.table_problems(TABLES[net], state_dicts[net],
                                                         checkpoint.flatten(abstract[net]))
    problems += [f"{net}: {p}" for p in net_problems]
    variables[net] = port_convert.unflatten(flat)
  if problems:
    raise port_convert.PortError(f"the weights do not match MTCNN ({len(problems)} problem(s)):\n  "
                            + "\n  ".join(problems))
  return variables


def convert(wheel: Wheel, log: Log = lambda s: None) -> tuple[dict, dict]:
  """AUX_NETWORKS entry point: (variables, extra metadata) from what `read` got of the wheel."""
  variables = convert_state_dicts(wheel.state_dicts)
  log("converted " + ", ".join(f"{n} ({len(TABLES[n])} tensors)" for n in TABLES))
  return variables, {"source_format": f"{REQUIREMENT} wheel",
                     "member_sha256": wheel.member_sha256}


def torch_outputs(modules: dict, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """The torch nets on NHWC `inputs` {"pnet"|"rnet"|"onet": [B, H, W, 3]}, outputs as NHWC/flat."""
  import torch  # pylint: disable=import-outside-toplevel

  out = {}
  with torch.inference_mode():
    for net, x in inputs.items():
      results = modules[net](torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))))
      for name, r in zip(_OUTPUT_NAMES[net], results):
        r = r.numpy()
        out[f"{net}/{name}"] = r.transpose(0, 2, 3, 1) if r.ndim == 4 else r
  return out


_OUTPUT_NAMES = {"pnet": ("reg", "prob"), "rnet": ("reg", "prob"),
                 "onet": ("reg", "landmarks", "prob")}


def flax_outputs(variables: dict, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """The flax nets on the same inputs, at the highest matmul precision."""
  out = {}
  with jax.default_matmul_precision("highest"):
    for net, x in inputs.items():
      module = nets.NETS[net][0]()
      results = jax.jit(module.apply)(variables[net], jnp.asarray(x))
      for name, r in zip(_OUTPUT_NAMES[net], results):
        out[f"{net}/{name}"] = np.asarray(r)
  return out


def random_inputs(seed: int = 0, batch: int = 8) -> dict[str, np.ndarray]:
  """Normalized random images as detect_face feeds them; P-Net's size is odd to test ceil pools."""
  rng = np.random.default_rng(seed)

  def image(*shape):
    return (rng.integers(0, 256, shape).astype(np.float32) - 127.5) * 0.0078125

  return {"pnet": image(2, 61, 47, 3), "rnet": image(batch, 24, 24, 3),
          "onet": image(batch, 48, 48, 3)}


def max_abs_diffs(wheel: Wheel, variables: dict, log: Log = lambda s: None) -> dict[str, float]:
  """AUX_NETWORKS entry point: max |torch - flax| per output, on random normalized images."""
  from port.torch_ref import mtcnn as torch_mtcnn  # pylint: disable=import-outside-toplevel

  return net_diffs(torch_mtcnn.load(wheel.state_dicts), variables)


def net_diffs(modules: dict, variables: dict, seed: int = 0, batch: int = 8) -> dict[str, float]:
  """max |torch - flax| per output of the torch `modules` and the flax `variables`, on
  random_inputs(seed, batch)."""
  inputs = random_inputs(seed, batch)
  want, got = torch_outputs(modules, inputs), flax_outputs(variables, inputs)
  return {k: float(np.abs(want[k] - got[k]).max()) for k in want}
