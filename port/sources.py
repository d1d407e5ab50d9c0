"""Resolves a checkpoint source (published name, URL or path), downloads it, and loads it safely."""

import hashlib
import os
import pickle
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from typing import Callable, NamedTuple

import numpy as np

from jaxvae import outputs, paths


class SourceError(ValueError):
  """A checkpoint source cannot be found, fetched or read safely."""


class Published(NamedTuple):
  model: str
  url: str
  sha256: str | None  # None where no hash has been published.
  filename: str


_BETA_VAE = "https://github.com/matthew-liu/beta-vae/raw/master/checkpoints"
PUBLISHED = {
    "betavae-l32": Published(
        "betavae", f"{_BETA_VAE}/l32-100/100.pt",
        "86e21d509efc5726c660bac97f9b2d6f66d46fd6a1030f6f0e843b907dc88bdd", "betavae-l32-100.pt"),
    "betavae-l200": Published(
        "betavae", f"{_BETA_VAE}/l200-100/100.pt",
        "24e21060d15f868a226ff794f44885abbf490ac572e652514fe5913963742129", "betavae-l200-100.pt"),
    "dfcvae-400": Published("dfcvae", f"{_BETA_VAE}/dfc-400/400.pt", None, "dfcvae-400.pt"),
    "vanilla-l200": Published(
        "vanilla",
        "https://huggingface.co/hussamalafandi/VAE-CelebA/resolve/main/"
        "vae_celeba_latent_200_epochs_10_batch_64_subset_80000.pth",
        None, "vanilla-l200.pth"),
    # MTCNN's weights ship inside the facenet-pytorch wheel; port/mtcnn.py fetches it with pip.
    "mtcnn": Published(
        "mtcnn",
        "https://files.pythonhosted.org/packages/ed/2e/"
        "2d56386bc2f834cdc683743903852cf1428b4e5ee119f16cf808b589d3cd/"
        "facenet_pytorch-2.6.0-py3-none-any.whl",
        "ecb82b27beb226d106f2219efe8f829b01b87a8595badd01545679bdb9f19cca",
        "facenet_pytorch-2.6.0-py3-none-any.whl"),
    # pytorch-fid's FID Inception-v3 (its GitHub release); sha256 as pinned by public code that
    # downloads this URL (the file name carries its first 8 hex digits, as torch hub's do).
    "inception-fid": Published(
        "inception",
        "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
        "pt_inception-2015-12-05-6726825d.pth",
        "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2",
        "pt_inception-2015-12-05-6726825d.pth"),
    # torchvision's VGG19 (IMAGENET1K_V1), for the DFC-VAE feature perceptual loss.
    "vgg19-imagenet": Published(
        "vgg19", "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
        "dcbb9e9dad569fff7a846263a77324fc34978fea2bfb039c012d710e1776ae44", "vgg19-dcbb9e9d.pth"),
}


def download(url: str, dest: str, sha256: str | None = None, timeout: float = 30.0) -> str:
  """Fetches `url` into `dest` atomically, checking `sha256` when given; returns `dest`."""
  os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=".download-", dir=os.path.dirname(os.path.abspath(dest)))
  try:
    try:
      with urllib.request.urlopen(url, timeout=timeout) as response, os.fdopen(fd, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0)
        done = 0
        for block in iter(lambda: response.read(1 << 20), b""):
          out.write(block)
          done += len(block)
          if total and sys.stderr.isatty():
            print(f"\rdownloading {url}: {done / total:6.1%}", end="", file=sys.stderr)
      if total and sys.stderr.isatty():
        print(file=sys.stderr)
    except (urllib.error.URLError, OSError, ValueError) as e:
      raise SourceError(
          f"could not download {url}: {getattr(e, 'reason', e)}. Without network access, download "
          "the file elsewhere and pass its local path (python -m port --source=PATH), or set "
          "JAXVAE_MIRROR to the folder that holds it.") from e
    if sha256 is not None:
      got = outputs.sha256_file(tmp)
      if got != sha256:
        raise SourceError(f"sha256 mismatch for {url}: expected {sha256}, got {got}; "
                          "the download is corrupt or the published file changed")
    os.chmod(tmp, outputs.default_file_mode())
    os.replace(tmp, dest)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  return dest


def find_in_mirrors(pub: Published) -> str | None:
  """A copy of `pub` in the folders of $JAXVAE_MIRROR (os.pathsep-separated), for offline use.

  A file matches by sha256 where the hash is published, else by its cache file name.
  """
  try:
    folders = paths.mirror_dirs()
  except FileNotFoundError as e:
    raise SourceError(str(e)) from e
  for folder in folders:
    for name in sorted(os.listdir(folder)):
      path = os.path.join(folder, name)
      if not os.path.isfile(path):
        continue
      if pub.sha256 is not None and outputs.sha256_file(path) == pub.sha256:
        return path
      if pub.sha256 is None and name == pub.filename:
        return path
  return None


def resolve(source: str, fetch: Callable[[Published, str], str] | None = None
            ) -> tuple[str, Published | None]:
  """A local path for `source` (a published name, an http(s)/file URL, or a path).

  A published name is looked up in the download cache, then in $JAXVAE_MIRROR, then downloaded
  into the cache, or fetched there by `fetch(pub, dest)` (which names its own failures).
  """
  if source in PUBLISHED:
    pub = PUBLISHED[source]
    dest = paths.cache_dir("downloads", pub.filename)
    if os.path.exists(dest) and (pub.sha256 is None or outputs.sha256_file(dest) == pub.sha256):
      return dest, pub
    mirrored = find_in_mirrors(pub)
    if mirrored is not None:
      return mirrored, pub
    if fetch is not None:
      return fetch(pub, dest), pub
    try:
      return download(pub.url, dest, pub.sha256), pub
    except SourceError as e:
      raise _unavailable(source, pub, e) from e
  scheme = urllib.parse.urlparse(source).scheme
  if scheme in ("http", "https", "file"):
    name = os.path.basename(urllib.parse.urlparse(source).path) or "checkpoint"
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    return download(source, paths.cache_dir("downloads", f"{digest}-{name}")), None
  if not os.path.exists(source):
    raise SourceError(f"{source} is neither a file nor a published name "
                      f"({', '.join(PUBLISHED)}) nor a URL")
  if os.path.isdir(source):
    raise SourceError(f"{source} is a directory; pass a checkpoint file")
  return source, None


def _unavailable(name: str, pub: Published, error: SourceError) -> SourceError:
  """Why a published file could not be had, and the two offline routes to it."""
  reason = getattr(error.__cause__, "reason", None) or error.__cause__ or error
  match = "any file name: it is matched by sha256" if pub.sha256 else f"named {pub.filename}"
  return SourceError(
      f"the weights of {name!r} ({pub.filename}, sha256 {pub.sha256}) are not in the cache and "
      f"could not be fetched from {pub.url} ({reason}). Download that file on a machine with "
      f"network access, then either put it in a folder named by $JAXVAE_MIRROR ({match}), or "
      f"port it once with `python -m port --model={pub.model} --source=PATH --out=DIR --verify` "
      "and pass that directory instead of the published name.")


def load_state_dict(path: str, log=lambda s: None) -> dict[str, np.ndarray]:
  """Reads a torch .pt/.pth (legacy or zip) or .safetensors file into {key: array}.

  torch files are read with weights_only=True: a file that needs arbitrary unpickling is refused.
  Tensors stored in another floating type than float32 are named through `log` (the port then
  widens them to float32, exactly).
  """
  state = _read_state_dict(path)
  widened = sorted(f"{k} ({v.dtype})" for k, v in state.items()
                   if v.dtype != np.float32 and np.issubdtype(v.dtype, np.floating))
  if widened:
    log(f"note: {len(widened)} tensor(s) are not float32 and are widened to float32 exactly: "
        + ", ".join(widened[:8]) + (" ..." if len(widened) > 8 else ""))
  return state


def _read_state_dict(path: str) -> dict[str, np.ndarray]:
  if path.endswith(".safetensors"):
    from safetensors import SafetensorError  # pylint: disable=import-outside-toplevel
    from safetensors.numpy import load_file  # pylint: disable=import-outside-toplevel
    try:
      return dict(load_file(path))
    except (SafetensorError, OSError, ValueError) as e:
      raise SourceError(f"{path} is not a readable safetensors file: {e}") from e

  import torch  # pylint: disable=import-outside-toplevel

  with open(path, "rb") as f:
    head = f.read(4)
  if head != b"PK\x03\x04" and not head.startswith(b"\x80"):  # zip, or a legacy pickle stream
    raise SourceError(f"{path} is not a torch checkpoint (neither torch's zip format nor its "
                      "legacy pickle format) and not a .safetensors file")
  try:
    obj = torch.load(path, map_location="cpu", weights_only=True)
  except pickle.UnpicklingError as e:
    if "Weights only load failed" in str(e):
      raise SourceError(
          f"refusing {path}: loading it would need unsafe unpickling of arbitrary objects "
          f"(torch.load weights_only=True failed: {str(e).splitlines()[0]}). Only plain "
          "state_dicts of tensors are accepted; re-save it with torch.save(model.state_dict(), f)."
      ) from e
    raise SourceError(f"{path} is not a torch checkpoint: {e}") from e
  except Exception as e:  # pylint: disable=broad-except  # torch's parser raises many kinds.
    raise SourceError(f"{path} is truncated or not a torch checkpoint: "
                      f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
  for wrapper in ("state_dict", "model_state_dict", "model"):
    if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
      obj = obj[wrapper]
  if not isinstance(obj, dict) or not obj:
    raise SourceError(f"{path} holds a {type(obj).__name__}, not a state_dict of tensors")
  bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
  if bad:
    raise SourceError(f"{path}: entries that are not tensors: {', '.join(map(str, bad[:10]))}")
  return {k: (v.float() if v.dtype == torch.bfloat16 else v).detach().cpu().numpy()
          for k, v in obj.items()}

