"""Keras PVAE port: parity for every weights format, name-free mapping, refusals, main.py modes."""

import json
import os
import re
import shutil
import sys
import zipfile
from typing import NamedTuple

import h5py
import numpy as np
import pytest

import keras2_h5
from conftest import PARITY_TOL, port_verified, run_cli
from jaxvae import checkpoint
from port import api, keras_ref

BATCH = 4


class Original(NamedTuple):
  model: object  # The Keras 3 PVAE with random weights and BatchNorm statistics.
  images: np.ndarray  # uint8 [B, 64, 64, 3]
  eps: np.ndarray  # [1, 100]: the original's one eps of std 0.1 shared by the batch.
  outputs: keras_ref.Outputs


def _original(seed: int, decoder_first: bool = False) -> Original:
  model = keras_ref.build_pvae(decoder_first=decoder_first)
  keras_ref.randomize(model, seed)
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, (BATCH, 64, 64, 3)).astype(np.uint8)
  eps = (0.1 * rng.standard_normal((1, 100))).astype(np.float32)
  return Original(model, images, eps, keras_ref.forward(model, images, eps))


@pytest.fixture(scope="module")
def original() -> Original:
  """Built after a throwaway model, so that its Keras names carry suffixes (conv2d_8, dense_5)."""
  keras_ref.build_pvae()
  return _original(seed=0)


def _diffs(ckpt_dir: str, orig: Original) -> dict[str, float]:
  """Max abs differences of the ported checkpoint against the Keras original, same eps."""
  import jax
  import jax.numpy as jnp
  loaded = checkpoint.load(ckpt_dir)
  out = jax.jit(loaded.model.apply)(loaded.variables, jnp.asarray(orig.outputs.x01),
                                    jnp.broadcast_to(jnp.asarray(orig.eps), (BATCH, 100)))
  recon = np.asarray(out.recon, np.float64)
  return {"mean": float(np.abs(np.asarray(out.mean) - orig.outputs.mean).max()),
          "logvar": float(np.abs(np.asarray(out.logvar) - orig.outputs.logvar).max()),
          "recon": float(np.abs(recon - orig.outputs.recon).max()) / 255.0,
          "recon_255": float(np.abs(recon - orig.outputs.recon).max())}


# Format name -> writer(model, folder) -> the saved file.
FORMATS = {
    "keras3_weights_h5": lambda m, d: _saved(m.save_weights, d / "pvae.weights.h5"),
    "keras3_archive": lambda m, d: _saved(m.save, d / "pvae.keras"),
    "keras3_functional_weights_h5": lambda m, d: _saved(keras_ref.functional(m).save_weights,
                                                        d / "functional.weights.h5"),
    "keras3_legacy_model_save_h5": lambda m, d: _saved(keras_ref.functional(m).save,
                                                       d / "functional.h5"),
    # Keras 2 layouts ('conv2d_8/kernel:0'), which Keras 3 cannot write: see tests/keras2_h5.py.
    "keras2_save_weights_h5": lambda m, d: keras2_h5.save_weights(str(d / "pvae.h5"), m),
    "keras2_model_save_h5": lambda m, d: keras2_h5.model_save(
        str(d / "model.h5"), keras_ref.functional(m), limit=256),  # Chunked attributes too.
}


def _saved(save, path) -> str:
  save(str(path))
  return str(path)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_every_format_ports_with_parity(tmp_path, original, fmt, record_property):
  src = FORMATS[fmt](original.model, tmp_path)
  log = []
  result = api.port("pvae", src, str(tmp_path / "ckpt"), log=log.append)
  diffs = _diffs(result.out_dir, original)
  record_property("parity", diffs)  # In the junit XML: the figures measured per format.
  assert max(diffs["mean"], diffs["logvar"], diffs["recon"]) <= PARITY_TOL, diffs
  assert diffs["recon_255"] <= PARITY_TOL * 255
  # The log names the format and every layer's mapping; the arrays are stored bit for bit.
  text = "\n".join(log)
  assert "format: " in text, text
  assert len(re.findall(r" -> (?:encoder_\d/\w+|decoder_\d/\w+|decoder_out|decoder_dense|z_\w+)$",
                        text, re.M)) == 18, text
  loaded = checkpoint.load(result.out_dir)
  p, s = loaded.variables["params"], loaded.variables["batch_stats"]
  enc, dec = original.model.encoder, original.model.decoder
  np.testing.assert_array_equal(p["encoder_2"]["conv"]["kernel"], enc.layers[7].kernel.numpy())
  np.testing.assert_array_equal(p["z_log_var"]["kernel"], enc.layers[15].kernel.numpy())
  np.testing.assert_array_equal(s["decoder_1"]["bn"]["var"], dec.layers[9].moving_variance.numpy())
  np.testing.assert_array_equal(p["decoder_out"]["bias"], dec.layers[-1].bias.numpy())
  has_config = fmt in ("keras3_archive", "keras3_legacy_model_save_h5", "keras2_model_save_h5")
  assert ("architecture config checked: 31 layers" in text) == has_config, text
  meta = checkpoint.read_metadata(result.out_dir)
  assert meta["model_config"]["output_range"] == [0.0, 255.0]
  assert meta["model_config"]["output_activation"] == "linear"


def test_names_that_differ_between_exports_still_map(tmp_path):
  """Decoder built before the encoder: its layers get the low numbers (conv2d_.., dense_..)."""
  orig = _original(seed=1, decoder_first=True)
  number = lambda layer: int(layer.name.rsplit("_", 1)[1]) if "_" in layer.name else 0
  enc, dec = orig.model.encoder.layers, orig.model.decoder.layers
  assert number(dec[1]) < number(enc[14]) and number(dec[4]) < number(enc[1])  # dense, conv2d
  for name, write in (("k2", FORMATS["keras2_save_weights_h5"]),
                      ("k3", FORMATS["keras3_weights_h5"])):
    folder = tmp_path / name
    folder.mkdir()
    result = api.port("pvae", write(orig.model, folder), str(folder / "ckpt"))
    diffs = _diffs(result.out_dir, orig)
    assert max(diffs["mean"], diffs["logvar"], diffs["recon"]) <= PARITY_TOL, (name, diffs)


@pytest.fixture(scope="module")
def keras3_file(original, tmp_path_factory) -> str:
  return FORMATS["keras3_weights_h5"](original.model, tmp_path_factory.mktemp("k3"))


def _refusal(tmp_path, src) -> str:
  with pytest.raises(api.PORT_ERRORS) as e:
    api.port("pvae", str(src), str(tmp_path / "refused"))
  assert not (tmp_path / "refused").exists()
  return str(e.value)


def _edited(tmp_path, keras3_file, edit) -> str:
  path = str(tmp_path / "edited.weights.h5")
  shutil.copy(keras3_file, path)
  with h5py.File(path, "r+") as f:
    edit(f)
  return path


def test_refuses_missing_layer_by_name(tmp_path, keras3_file):
  path = _edited(tmp_path, keras3_file, lambda f: f.__delitem__("decoder/layers/conv2d_3"))
  message = _refusal(tmp_path, path)
  assert "missing: Conv2D layer #8 of 8 for decoder_out (expected kernel (3, 3, 32, 3)" in message
  assert "1 problem(s)" in message


def test_refuses_extra_layer_by_name(tmp_path, keras3_file):
  path = _edited(tmp_path, keras3_file,
                 lambda f: f.copy("encoder/layers/dense_1", "encoder/layers/dense_2"))
  message = _refusal(tmp_path, path)
  assert "unexpected: Dense encoder/layers/dense_2" in message and "1 problem(s)" in message


def test_refuses_mis_shaped_weight_by_name(tmp_path, keras3_file):
  def edit(f):
    del f["decoder/layers/conv2d_2/vars/0"]
    f["decoder/layers/conv2d_2/vars/0"] = np.zeros((3, 3, 64, 16), np.float32)
  message = _refusal(tmp_path, _edited(tmp_path, keras3_file, edit))
  assert re.search(r"shape mismatch: decoder/layers/conv2d_2 \(conv2d_\d+\) kernel \(3, 3, 64, 16\)"
                   r" -> params/decoder_2/conv/kernel, expected \(3, 3, 64, 32\)", message), message


def test_refuses_unknown_layer_and_non_keras_files(tmp_path, keras3_file):
  def edit(f):
    f.create_group("encoder/layers/conv3d/vars")["0"] = np.zeros((2, 2, 2, 3, 4), np.float32)
  assert "unexpected: encoder/layers/conv3d with weights 0 (2, 2, 2, 3, 4)" in _refusal(
      tmp_path, _edited(tmp_path, keras3_file, edit))
  (tmp_path / "notes.h5").write_bytes(b"not hdf5 at all")
  assert "not Keras weights" in _refusal(tmp_path, tmp_path / "notes.h5")
  with h5py.File(tmp_path / "other.h5", "w") as f:
    f["data"] = np.zeros(3)
  assert "not Keras weights" in _refusal(tmp_path, tmp_path / "other.h5")


def test_refuses_hyperparameters_that_differ_from_the_notebook(tmp_path, original):
  """Same shapes, other architecture: the .keras config's eps and activation are checked."""
  src = FORMATS["keras3_archive"](original.model, tmp_path)
  with zipfile.ZipFile(src) as z:
    files = {n: z.read(n) for n in z.namelist()}
  config = files["config.json"].decode()
  config = config.replace('"epsilon": 0.001', '"epsilon": 1e-05', 1)
  config = re.sub(r'("units": 4096, "activation": )"relu"', r'\1"sigmoid"', config)
  edited = str(tmp_path / "edited.keras")
  with zipfile.ZipFile(edited, "w") as z:
    for name, data in files.items():
      z.writestr(name, config if name == "config.json" else data)
  message = _refusal(tmp_path, edited)
  assert "config: BatchNormalization batch_normalization" in message, message
  assert "has epsilon=1e-05; the port assumes 0.001" in message
  assert re.search(r"config: Dense dense_\d+ \(4096 units\) has activation='sigmoid'; the port "
                   r"assumes 'relu'", message), message


def test_keras_own_loader_flags_a_conflicting_mapping(original, keras3_file):
  """--verify also loads the file with Keras' load_weights: a swapped mapping is caught."""
  from port.keras import mapping, readers, verify
  mapped = mapping.convert_pvae(readers.read(keras3_file)).converted
  log = []
  assert verify.keras_load_agreement(keras3_file, mapped.variables, 100, log.append) == 0.0
  assert "agrees with the mapping on 18/18 layers" in log[-1]
  params = dict(mapped.variables["params"])
  params["z_mean"], params["z_log_var"] = params["z_log_var"], params["z_mean"]
  swapped = {**mapped.variables, "params": params}
  assert verify.keras_load_agreement(keras3_file, swapped, 100, log.append) > 0.01
  assert "16/18 layers" in log[-1] and "CONFLICTS on z_mean, z_log_var" in log[-1]


@pytest.mark.parametrize("layout", ["savedmodel", "checkpoint"])
def test_tensorflow_formats_without_tensorflow_say_how_to_export(tmp_path, monkeypatch, layout):
  monkeypatch.setitem(sys.modules, "tensorflow", None)  # import tensorflow -> ImportError
  folder = tmp_path / "pvae"
  (folder / "variables").mkdir(parents=True)
  if layout == "savedmodel":
    (folder / "saved_model.pb").write_bytes(b"")
  else:
    (folder / "checkpoint").write_text('model_checkpoint_path: "ckpt-1"\n')
    (folder / "ckpt-1.index").write_bytes(b"")
  message = _refusal(tmp_path, folder)
  kind = "SavedModel" if layout == "savedmodel" else "checkpoint"
  assert f"is a TensorFlow {kind}; reading it needs TensorFlow, which is not installed" in message
  assert 'model.save_weights("pvae.weights.h5")' in message


@pytest.fixture(scope="module")
def cli_port(original, keras3_file, tmp_path_factory):
  """`python -m port --model=pvae --verify` on the Keras 3 weights file."""
  return port_verified("pvae", keras3_file, tmp_path_factory.mktemp("cli") / "pvae")


def test_cli_verify_prints_mapping_and_parity(cli_port, original):
  result, out = cli_port
  assert result.returncode == 0, result.stderr + result.stdout
  assert "format: Keras 3 weights" in result.stdout
  assert re.search(r"encoder/layers/conv2d \(conv2d_\d+\) +Conv2D +kernel \(4, 4, 3, 32\), "
                   r"bias \(32,\) +-> encoder_0/conv", result.stdout), result.stdout
  assert re.search(r"decoder/layers/dense \(dense_\d+\) .* -> decoder_dense", result.stdout)
  diffs = dict(re.findall(r"(mean|logvar|recon) ([0-9.e+-]+)", result.stdout.split("parity")[-1]))
  assert set(diffs) == {"mean", "logvar", "recon"}, result.stdout
  assert all(float(v) <= PARITY_TOL for v in diffs.values()), diffs
  assert "0-255 scale" in result.stdout
  assert "keras load_weights agrees with the mapping on 18/18 layers" in result.stdout
  assert re.search(r"weights 0 ", result.stdout), result.stdout
  assert max(_diffs(out, original)[k] for k in ("mean", "logvar", "recon")) <= PARITY_TOL


def test_main_variations_with_input_noise(cli_port, tmp_path):
  _, ckpt = cli_port
  result = run_cli("main.py", "--config=configs/pvae.py", "--mode=variations",
                   f"--workdir={tmp_path}", f"--config.checkpoint={ckpt}",
                   "--config.input_noise_std=0.05", "--config.num_variations=3")
  assert result.returncode == 0, result.stderr
  with np.load(tmp_path / "variations.npz") as npz:
    v = npz["variations"]
  assert v.shape == (2, 3, 64, 64, 3) and np.isfinite(v).all() and 0 <= v.min() <= v.max() <= 1
  assert np.abs(v[:, 0] - v[:, 1]).max() > 1e-3  # Fresh input noise per variation.
  summary = json.load(open(tmp_path / "summary.json"))["variations"]
  assert summary["model"] == "pvae"


@pytest.mark.parametrize("mode", ["reconstruct", "sample", "interpolate", "edit"])
def test_every_other_mode_runs_on_the_ported_checkpoint(cli_port, tmp_path, mode):
  from configs import pvae
  from jaxvae import modes, options
  config = pvae.get_config()
  assert config.sampling_rule == "pvae_shared" and config.model.output_range == (0.0, 255.0)
  config.checkpoint = cli_port[1]
  config.sample.num_samples, config.interpolate.steps = 3, 3
  config.edit.strengths = (0.0, 1.0)
  modes.get(mode)(options.validate(config, mode), str(tmp_path))
  npz_files = [n for n in os.listdir(tmp_path) if n.endswith(".npz")]
  assert npz_files == [f"{mode}.npz"]
  with np.load(tmp_path / npz_files[0]) as npz:
    arrays = [npz[k] for k in npz.files if npz[k].dtype.kind == "f" and npz[k].ndim >= 4]
  assert arrays and all(np.isfinite(a).all() and 0 <= a.min() <= a.max() <= 1 for a in arrays)
