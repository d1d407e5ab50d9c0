"""Hostile inputs as a new user would try them: each one is refused or skipped with a message that
names the problem, a non-zero exit code, no traceback, and nothing left behind."""

import glob
import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO, run_cli, shared_file
from random_weights import randomize_torch
from jaxvae import checkpoint
from port import api, torch_ref


def _main(ckpt, workdir, mode, *overrides, env=None):
  return run_cli("main.py", "--config=configs/betavae.py", f"--mode={mode}",
                 f"--workdir={workdir}", f"--config.checkpoint={ckpt}", *overrides, env=env)


def _clean_failure(result, *needles):
  assert result.returncode not in (0, None), result.stdout + result.stderr
  assert "Traceback" not in result.stderr, result.stderr
  for needle in needles:
    assert needle in result.stderr, result.stderr


def _no_leftovers(folder):
  """No temporary output folders, journals or partial files in `folder`."""
  if os.path.isdir(folder):
    assert not [n for n in os.listdir(folder) if n.startswith((".outputs-", ".commit-", ".tmp"))]


# Damaged checkpoints: each is named in one message before Orbax or tensorstore reads anything.

def _copy_ported(ported_dir, tmp_path):
  out = tmp_path / "ckpt"
  shutil.copytree(ported_dir("l32-100.pt"), out)
  return out


def _largest_data_file(ckpt):
  files = [f for f in glob.glob(str(ckpt / "variables" / "**" / "*"), recursive=True)
           if os.path.isfile(f) and "/d/" in f]
  return max(files, key=os.path.getsize)


def _truncate(path):
  data = open(path, "rb").read()
  open(path, "wb").write(data[: len(data) // 2])


def _flip_byte(path):
  data = bytearray(open(path, "rb").read())
  data[len(data) // 2] ^= 0x01
  open(path, "wb").write(bytes(data))


DAMAGE = {
    "metadata_deleted": (lambda c: os.remove(c / "variables" / "_METADATA"),
                         "missing file variables/_METADATA"),
    "metadata_truncated": (lambda c: _truncate(c / "variables" / "_METADATA"),
                           "variables/_METADATA has"),
    "manifest_deleted": (lambda c: os.remove(c / "variables" / "manifest.ocdbt"),
                         "missing file variables/manifest.ocdbt"),
    "data_truncated": (lambda c: _truncate(_largest_data_file(c)), "(truncated or replaced)"),
    "data_deleted": (lambda c: os.remove(_largest_data_file(c)), "missing file variables/"),
    "byte_flipped": (lambda c: _flip_byte(_largest_data_file(c)), "does not match its sha256"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_checkpoint_is_refused_by_name(tmp_path, ported_dir, damage):
  ckpt = _copy_ported(ported_dir, tmp_path)
  hurt, needle = DAMAGE[damage]
  hurt(ckpt)
  with pytest.raises(checkpoint.CheckpointError, match="damaged or incomplete") as e:
    checkpoint.load(str(ckpt))
  assert needle in str(e.value)
  if damage == "byte_flipped":  # Through the CLI too: exit 1, one message, no output.
    out = tmp_path / "out"
    _clean_failure(_main(ckpt, out, "reconstruct"), "damaged or incomplete", needle)
    assert not out.exists() or os.listdir(out) == []


def test_checkpoint_without_digests_loads_with_a_warning(tmp_path, ported_dir):
  ckpt = _copy_ported(ported_dir, tmp_path)
  meta = json.load(open(ckpt / checkpoint.METADATA_FILE))
  del meta["digests"]
  json.dump(meta, open(ckpt / checkpoint.METADATA_FILE, "w"))
  with pytest.warns(checkpoint.LegacyCheckpointWarning, match="port it again"):
    assert checkpoint.load(str(ckpt)).model.latent_dim == 32


def test_digest_check_costs_under_a_tenth_of_the_load(ported_dir):
  """The measured share of file hashing in a checkpoint load (the issue's bound: 10%)."""
  import time
  ckpt = ported_dir("l200-100.pt")
  meta = checkpoint.read_metadata(ckpt)
  checkpoint.load(ckpt)  # Warm the file cache and imports.
  t0 = time.perf_counter()
  for _ in range(3):
    checkpoint.verify_files(ckpt, meta)
  verify = (time.perf_counter() - t0) / 3
  t0 = time.perf_counter()
  for _ in range(3):
    checkpoint.load(ckpt)
  load = (time.perf_counter() - t0) / 3
  assert verify < 0.1 * load, (verify, load)


# Hostile torch sources for the port: refused by name, nothing written.

def _state(latent=32):
  return randomize_torch(torch_ref.BetaVAE(latent)).state_dict()


def _port_cli(tmp_path, state, *flags):
  src = tmp_path / "src.pt"
  torch.save(state, src)
  out = tmp_path / "ported"
  return run_cli("-m", "port", "--model=betavae", f"--source={src}", f"--out={out}", *flags), out


def test_nan_weight_is_refused_by_name_and_leaves_nothing(tmp_path):
  state = _state()
  state["decoder.1.0.weight"][0, 0, 0, 0] = float("nan")
  for flags in ((), ("--verify",)):
    result, out = _port_cli(tmp_path, state, *flags)
    _clean_failure(result, "non-finite values: decoder.1.0.weight")
    assert not out.exists()
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]


def test_verify_treats_nan_as_failure():
  assert not api._within({"recon": float("nan")})  # pylint: disable=protected-access
  assert not api._within({"recon": 2e-5}) and api._within({"recon": 1e-6})


def test_float16_source_is_named_and_widened(tmp_path):
  state = {k: v.half() if v.is_floating_point() else v for k, v in _state().items()}
  result, out = _port_cli(tmp_path, state)
  assert result.returncode == 0, result.stderr
  assert "not float32 and are widened to float32 exactly" in result.stdout
  assert "decoder.0.0.bias (float16)" in result.stdout


def test_one_misshaped_head_is_blamed_alone(tmp_path):
  state = _state(latent=200)
  state["fc_mu.weight"] = torch.zeros(199, 256)
  result, out = _port_cli(tmp_path, state)
  _clean_failure(result, "shape mismatch: fc_mu.weight")
  assert "fc_var" not in result.stderr and "fc_z" not in result.stderr
  assert "fc_mu.bias" not in result.stderr
  assert not out.exists()


def test_force_over_a_regular_file_is_refused(tmp_path):
  src = tmp_path / "src.pt"
  torch.save(_state(), src)
  (tmp_path / "taken").write_text("mine")
  result = run_cli("-m", "port", "--model=betavae", f"--source={src}",
                   f"--out={tmp_path / 'taken'}", "--force")
  _clean_failure(result, "exists and is not a directory")
  assert (tmp_path / "taken").read_text() == "mine"
  assert sorted(os.listdir(tmp_path)) == ["src.pt", "taken"]


# Bad images: named, skipped, listed in the summary; nothing usable is a clear failure.

def _garbled_jpeg(path):
  from skimage import data
  Image.fromarray(data.astronaut()).save(path, "JPEG", quality=90)
  raw = bytearray(open(path, "rb").read())
  rng = np.random.default_rng(0)
  for i in rng.integers(2000, len(raw) - 100, 30):
    raw[i] = rng.integers(0, 256)
  open(path, "wb").write(bytes(raw))


def test_tiny_and_garbled_images_are_skipped_and_listed(tmp_path, ported_dir):
  faces = tmp_path / "faces"
  faces.mkdir()
  Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(faces / "dot.png")
  _garbled_jpeg(faces / "garbled.jpg")
  Image.fromarray(np.full((218, 178, 3), 120, np.uint8)).save(faces / "good.png")
  out = tmp_path / "out"
  result = _main(ported_dir("l32-100.pt"), out, "reconstruct", f"--config.input={faces}")
  assert result.returncode == 0, result.stderr
  assert "dot.png: 1x1 pixels is below the minimum of 32" in result.stderr
  assert "garbled.jpg: corrupt JPEG data" in result.stderr
  summary = json.load(open(out / "summary.json"))["reconstruct"]
  assert [os.path.basename(s["input"]) for s in summary["skipped"]] == ["dot.png", "garbled.jpg"]
  assert [os.path.basename(n) for n in summary["names"]] == ["good.png"]
  os.remove(faces / "good.png")
  nothing = _main(ported_dir("l32-100.pt"), tmp_path / "out2", "reconstruct",
                  f"--config.input={faces}")
  _clean_failure(nothing, "no readable input image", "dot.png", "garbled.jpg")


# Config values refused before any work.

@pytest.mark.parametrize("mode,override,needle", [
    ("evaluate", "--config.num_variations=1", "needs config.num_variations >= 2"),
    ("variations", "--config.num_variations=100000", "config.num_variations must be in [1, 4096]"),
    ("variations", "--config.seed=100000000000000000000", "config.seed must be in [0, 4294967295]"),
    ("variations", "--config.seed=-5", "config.seed must be in [0, 4294967295]"),
    ("sample", "--config.temperature=-1", "config.temperature must be >= 0"),
    ("sample", "--config.sample.num_samples=0", "config.sample.num_samples must be in"),
    ("interpolate", "--config.interpolate.method=cubic", "config.interpolate.method must be one"),
])
def test_bad_config_is_refused_before_any_work(tmp_path, ported_dir, mode, override, needle):
  out = tmp_path / "out"
  result = _main(ported_dir("l32-100.pt"), out, mode, override)
  _clean_failure(result, needle)
  assert not out.exists()


def test_workdir_that_is_a_file_fails_before_computing(tmp_path, ported_dir):
  (tmp_path / "out").write_text("not a folder")
  result = _main(ported_dir("l32-100.pt"), tmp_path / "out", "variations")
  _clean_failure(result, "exists and is not a folder")
  assert "variations" not in result.stderr.split("error:")[0]


def test_grid_modes_cap_what_they_hold_and_point_to_generate(tmp_path, ported_dir):
  faces = tmp_path / "faces"
  faces.mkdir()
  for i in range(5):
    Image.fromarray(np.full((218, 178, 3), 40 * i, np.uint8)).save(faces / f"{i}.png")
  result = _main(ported_dir("l32-100.pt"), tmp_path / "out", "variations",
                 f"--config.input={faces}", "--config.num_variations=1000")
  _clean_failure(result, "5 inputs x 1000 variations would draw 5000 images", "--mode=generate")
  _no_leftovers(tmp_path / "out")


# Environment.

def test_missing_mirror_folder_is_an_error(tmp_path):
  result = run_cli("-m", "port", "--source=betavae-l32", f"--out={tmp_path / 'o'}",
                   env={"JAXVAE_MIRROR": str(tmp_path / "nowhere")})
  _clean_failure(result, "JAXVAE_MIRROR names folder(s) that do not exist")


def test_jaxvae_cache_moves_the_compilation_cache(tmp_path, ported_dir):
  cache = tmp_path / "cache"
  result = _main(ported_dir("l32-100.pt"), tmp_path / "out", "reconstruct",
                 env={"JAXVAE_CACHE": str(cache)})
  assert result.returncode == 0, result.stderr
  assert os.listdir(cache / "xla")  # Compiled programs went there.


def test_unprepared_tfds_leaves_no_temporary_folder(tmp_path):
  import tempfile
  from jaxvae import celeba
  before = set(os.listdir(tempfile.gettempdir()))
  with pytest.raises(FileNotFoundError, match="no prepared celeb_a"):
    celeba.open_celeba("tfds", tfds_data_dir=str(tmp_path / "empty"))
  assert not {n for n in set(os.listdir(tempfile.gettempdir())) - before if "tfds" in n}


# Interrupted.

def test_sigint_during_variations_writes_nothing_and_does_not_block_a_rerun(tmp_path,
                                                                           ported_dir):
  faces = tmp_path / "faces"
  faces.mkdir()
  face = Image.fromarray(np.full((218, 178, 3), 120, np.uint8))
  for i in range(256):
    face.save(faces / f"{i:03d}.png")
  out = tmp_path / "out"
  args = [sys.executable, "main.py", "--config=configs/betavae.py", "--mode=variations",
          f"--workdir={out}", f"--config.checkpoint={ported_dir('l32-100.pt')}",
          f"--config.input={faces}"]
  proc = subprocess.Popen(args, cwd=REPO, stderr=subprocess.PIPE, text=True)
  for line in proc.stderr:  # Interrupt once every input is read: compute and writing follow.
    if "read 256/256 inputs" in line:
      proc.send_signal(signal.SIGINT)
      break
  rest = proc.stderr.read()
  assert proc.wait(timeout=120) == 130, rest
  assert "interrupted, nothing written" in rest and "Traceback" not in rest, rest
  assert not [n for n in os.listdir(out) if not n.startswith(".")], os.listdir(out)
  _no_leftovers(out)
  again = _main(ported_dir("l32-100.pt"), out, "variations", f"--config.input={faces}",
                "--config.num_variations=2")
  assert again.returncode == 0, again.stderr


def test_cached_port_without_digests_is_ported_again(tmp_path, monkeypatch):
  from conftest import BETA_VAE_DIR
  from jaxvae import weights
  shared_file("l32-100.pt")
  monkeypatch.setenv("JAXVAE_CACHE", str(tmp_path / "cache"))
  monkeypatch.setenv("JAXVAE_MIRROR", BETA_VAE_DIR)
  out = weights.ensure_ported("betavae-l32")
  meta_path = os.path.join(out, checkpoint.METADATA_FILE)
  meta = json.load(open(meta_path))
  del meta["digests"]  # As a port written before digests existed.
  json.dump(meta, open(meta_path, "w"))
  assert weights.ensure_ported("betavae-l32") == out
  assert "digests" in json.load(open(meta_path))  # Ported again, now verifiable.


def test_pvae_without_a_checkpoint_names_both_routes(tmp_path):
  result = run_cli("main.py", "--config=configs/pvae.py", "--mode=variations",
                   f"--workdir={tmp_path / 'out'}")
  _clean_failure(result, "config.checkpoint is empty", "python -m port --model=pvae",
                 "--mode=train --workdir=runs/pvae")
  assert not (tmp_path / "out").exists()
