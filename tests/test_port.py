"""The port tool: real checkpoints with parity, every refusal, sources, downloads and the cache."""

import functools
import http.server
import os
import re
import threading

import numpy as np
import pytest
import torch

from conftest import PARITY_TOL, closed_url, run_cli, shared_file
from random_weights import randomize_torch
from jaxvae import checkpoint, outputs, weights
from port import api, convert, sources, torch_ref


@pytest.mark.parametrize("name,latent", [("l200-100.pt", 200), ("l32-100.pt", 32)])
def test_real_checkpoint_through_cli_verify_and_bitexact_roundtrip(tmp_path, name, latent):
  src = shared_file(name)
  out = tmp_path / "ckpt"
  result = run_cli("-m", "port", "--model=betavae", f"--source={src}", f"--out={out}", "--verify")
  assert result.returncode == 0, result.stderr + result.stdout
  diffs = dict(re.findall(r"(mean|logvar|recon) ([0-9.e+-]+)", result.stdout))
  assert set(diffs) == {"mean", "logvar", "recon"}, result.stdout
  assert all(float(v) <= PARITY_TOL for v in diffs.values()), diffs
  # Every stored array equals the torch tensor under the documented layout change, bit for bit.
  state = torch.load(src, map_location="cpu", weights_only=True)
  loaded = checkpoint.load(str(out))
  assert loaded.model.latent_dim == latent
  p, s = loaded.variables["params"], loaded.variables["batch_stats"]
  np.testing.assert_array_equal(p["fc_mu"]["kernel"], state["fc_mu.weight"].numpy().T)
  np.testing.assert_array_equal(p["encoder_2"]["conv"]["kernel"],
                                state["encoder.2.0.weight"].numpy().transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(p["decoder_1"]["conv"]["kernel"],
                                state["decoder.1.0.weight"].numpy().transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(s["decoder_3"]["bn"]["var"], state["decoder.3.1.running_var"].numpy())
  n_stored = len(checkpoint.flatten(loaded.variables))
  assert n_stored == len([k for k in state if not k.endswith("num_batches_tracked")])
  meta = checkpoint.read_metadata(str(out))
  assert meta["source_sha256"] == outputs.sha256_file(src)
  assert meta["model"] == "betavae" and meta["model_config"]["latent_dim"] == latent


def _random_state(cls=torch_ref.BetaVAE, latent=32):
  return randomize_torch(cls(latent)).state_dict()


def _save(tmp_path, state, name="ckpt.pt"):
  path = str(tmp_path / name)
  torch.save(state, path)
  return path


def _port_error(tmp_path, state_or_path, model="betavae"):
  path = state_or_path if isinstance(state_or_path, str) else _save(tmp_path, state_or_path)
  with pytest.raises(api.PORT_ERRORS) as e:
    api.port(model, path, str(tmp_path / "refused"))
  assert not (tmp_path / "refused").exists()
  return str(e.value)


def test_refuses_missing_key(tmp_path):
  state = _random_state()
  del state["fc_z.bias"]
  assert "missing: fc_z.bias" in _port_error(tmp_path, state)


def test_refuses_unexpected_key(tmp_path):
  state = _random_state()
  state["extra.weight"] = torch.zeros(3)
  assert "unexpected: extra.weight" in _port_error(tmp_path, state)


def test_refuses_wrong_shape(tmp_path):
  state = _random_state()
  state["decoder.1.0.weight"] = torch.zeros(64, 16, 4, 4)
  assert "shape mismatch: decoder.1.0.weight" in _port_error(tmp_path, state)


def test_reports_all_problems_at_once(tmp_path):
  state = _random_state()
  del state["fc_z.bias"]
  state["bogus"] = torch.zeros(1)
  message = _port_error(tmp_path, state)
  assert "missing: fc_z.bias" in message and "unexpected: bogus" in message


def test_refuses_truncated_file(tmp_path):
  data = open(shared_file("l32-100.pt"), "rb").read()
  path = tmp_path / "truncated.pt"
  path.write_bytes(data[: len(data) // 2])
  assert "truncated or not a torch checkpoint" in _port_error(tmp_path, str(path))


def test_refuses_truncated_zip_file(tmp_path):
  path = _save(tmp_path, _random_state())
  data = open(path, "rb").read()
  open(path, "wb").write(data[: len(data) - 4000])
  assert "truncated or not a torch checkpoint" in _port_error(tmp_path, path)


def test_refuses_non_checkpoint_file(tmp_path):
  path = tmp_path / "notes.pt"
  path.write_text("these are not weights\n")
  assert "not a torch checkpoint" in _port_error(tmp_path, str(path))


class _Evil:
  marker = ""

  def __reduce__(self):
    return (open, (self.marker, "w"))


def test_refuses_pickle_that_would_run_code_and_runs_nothing(tmp_path):
  marker = tmp_path / "pwned"
  evil = _Evil()
  evil.marker = str(marker)
  path = _save(tmp_path, {"fc_mu.weight": torch.zeros(2, 2), "payload": evil})
  assert not marker.exists()
  message = _port_error(tmp_path, path)
  assert "unsafe unpickling" in message
  assert not marker.exists()


def test_refuses_existing_output_without_force(tmp_path):
  path = _save(tmp_path, _random_state())
  out = tmp_path / "out"
  out.mkdir()
  (out / "keep.txt").write_text("mine")
  result = run_cli("-m", "port", "--model=betavae", f"--source={path}", f"--out={out}")
  assert result.returncode != 0 and "already exists" in result.stderr
  assert "--force" in result.stderr and (out / "keep.txt").read_text() == "mine"
  result = run_cli("-m", "port", "--model=betavae", f"--source={path}", f"--out={out}", "--force")
  assert result.returncode == 0, result.stderr
  assert not (out / "keep.txt").exists() and checkpoint.read_metadata(str(out))["model"] == "betavae"


def test_dfcvae_ignores_exactly_the_unused_tensors(tmp_path):
  state = _random_state(torch_ref.DFCVAE, 100)
  assert len(state) == 118
  lines = []
  result = api.port("dfcvae", _save(tmp_path, state), str(tmp_path / "out"), check_parity=True,
                    log=lines.append)
  unused = sorted(k for k in state if k.startswith(("encoder.", "decoder.")))
  assert len(unused) == 56
  assert checkpoint.read_metadata(result.out_dir)["ignored_source_keys"] == unused
  assert any(line.startswith("ignored 56 unused tensors") and "encoder.0.0.weight" in line
             for line in lines)
  assert max(result.diffs.values()) <= PARITY_TOL
  # Anything else unexpected is still refused.
  state["e5.weight"] = torch.zeros(1)
  assert "unexpected: e5.weight" in _port_error(tmp_path, state, "dfcvae")


def test_vanilla_port_with_verify(tmp_path):
  result = api.port("vanilla", _save(tmp_path, _random_state(torch_ref.VAE, 200)),
                    str(tmp_path / "out"), check_parity=True)
  assert result.verified and max(result.diffs.values()) <= PARITY_TOL
  assert checkpoint.load(result.out_dir).model.latent_dim == 200


def test_verify_failure_writes_nothing(tmp_path, monkeypatch):
  from port import verify
  monkeypatch.setattr(verify, "TOLERANCE", 0.0)
  monkeypatch.setattr(api, "TOLERANCE", 0.0)
  result = api.port("betavae", _save(tmp_path, _random_state()), str(tmp_path / "out"),
                    check_parity=True)
  assert not result.verified and result.out_dir is None and not (tmp_path / "out").exists()


def test_safetensors_source(tmp_path):
  from safetensors.numpy import save_file
  state = {k: v.numpy() for k, v in _random_state().items()}
  path = str(tmp_path / "w.safetensors")
  save_file(state, path)
  result = api.port("betavae", path, str(tmp_path / "out"), check_parity=True)
  assert result.verified and max(result.diffs.values()) <= PARITY_TOL


def test_wrapped_state_dict_is_accepted(tmp_path):
  path = _save(tmp_path, {"state_dict": _random_state(), "epoch": 3})
  assert api.port("betavae", path, str(tmp_path / "out")).out_dir


@pytest.fixture
def http_root(tmp_path):
  """A local HTTP server on 127.0.0.1 serving tmp_path/www; yields (folder, base URL)."""
  www = tmp_path / "www"
  www.mkdir()
  handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
  handler.log_message = lambda *a: None
  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  yield www, f"http://127.0.0.1:{server.server_address[1]}"
  server.shutdown()
  server.server_close()


def test_published_name_downloads_verifies_hash_and_caches(tmp_path, http_root, monkeypatch):
  www, base = http_root
  src = shared_file("l32-100.pt")
  (www / "100.pt").write_bytes(open(src, "rb").read())
  monkeypatch.setenv("JAXVAE_CACHE", str(tmp_path / "cache"))
  pub = sources.PUBLISHED["betavae-l32"]
  monkeypatch.setitem(sources.PUBLISHED, "betavae-l32", pub._replace(url=f"{base}/100.pt"))
  out = weights.ensure_ported("betavae-l32")
  assert out == str(tmp_path / "cache" / "checkpoints" / "betavae-l32")
  assert outputs.sha256_file(str(tmp_path / "cache" / "downloads" / pub.filename)) == pub.sha256
  assert checkpoint.read_metadata(out)["source_sha256"] == pub.sha256
  (www / "100.pt").unlink()  # Second use: no network needed.
  assert weights.ensure_ported("betavae-l32") == out


def test_download_with_wrong_hash_is_refused_and_not_kept(tmp_path, http_root, monkeypatch):
  www, base = http_root
  (www / "100.pt").write_bytes(b"corrupted" * 100)
  monkeypatch.setenv("JAXVAE_CACHE", str(tmp_path / "cache"))
  pub = sources.PUBLISHED["betavae-l200"]
  monkeypatch.setitem(sources.PUBLISHED, "betavae-l200", pub._replace(url=f"{base}/100.pt"))
  with pytest.raises(sources.SourceError, match="sha256 mismatch"):
    sources.resolve("betavae-l200")
  assert os.listdir(tmp_path / "cache" / "downloads") == []


def test_file_url_source(tmp_path, monkeypatch):
  monkeypatch.setenv("JAXVAE_CACHE", str(tmp_path / "cache"))
  path = _save(tmp_path, _random_state())
  result = api.port("betavae", "file://" + path, str(tmp_path / "out"))
  assert result.sha256 == outputs.sha256_file(path)


def test_offline_download_error_says_to_pass_a_local_file(tmp_path, monkeypatch):
  monkeypatch.setenv("JAXVAE_CACHE", str(tmp_path / "cache"))
  with pytest.raises(sources.SourceError, match="could not download .* pass its local path"):
    sources.resolve(closed_url("100.pt"))


def test_unknown_source_and_model_mismatch(tmp_path):
  with pytest.raises(sources.SourceError, match="neither a file nor a published name"):
    sources.resolve(str(tmp_path / "nope.pt"))
  with pytest.raises(ValueError, match="is a betavae checkpoint, not dfcvae"):
    api.port("dfcvae", "betavae-l200", str(tmp_path / "out"))


def test_latent_size_is_read_from_shapes():
  state = {k: v.numpy() for k, v in _random_state(latent=7).items()}
  assert convert.convert("betavae", state).model.latent_dim == 7


def test_published_name_from_a_mirror_folder_without_network(tmp_path, monkeypatch):
  monkeypatch.setenv("JAXVAE_CACHE", str(tmp_path / "cache"))
  mirror = tmp_path / "mirror"
  mirror.mkdir()
  (mirror / "decoy.pt").write_bytes(b"\x80not it")
  (mirror / "100.pt").write_bytes(open(shared_file("l200-100.pt"), "rb").read())
  monkeypatch.setenv("JAXVAE_MIRROR", str(mirror))
  pub = sources.PUBLISHED["betavae-l200"]
  monkeypatch.setitem(sources.PUBLISHED, "betavae-l200", pub._replace(url="http://127.0.0.1:9/x"))
  path, _ = sources.resolve("betavae-l200")
  assert path == str(mirror / "100.pt")


def test_loading_a_non_checkpoint_is_a_clear_error(tmp_path):
  with pytest.raises(checkpoint.CheckpointError, match="does not exist"):
    checkpoint.load(str(tmp_path / "nowhere"))
  (tmp_path / "empty").mkdir()
  with pytest.raises(checkpoint.CheckpointError, match="jaxvae.json is missing"):
    checkpoint.load(str(tmp_path / "empty"))
  (tmp_path / "empty" / "jaxvae.json").write_text('{"model": "betavae"}')
  with pytest.raises(checkpoint.CheckpointError, match="malformed: no model_config"):
    checkpoint.load(str(tmp_path / "empty"))
  (tmp_path / "empty" / "jaxvae.json").write_text("{not json")
  with pytest.raises(checkpoint.CheckpointError, match="malformed"):
    checkpoint.load(str(tmp_path / "empty"))


def test_checkpoint_of_another_latent_size_is_reported_by_name(tmp_path):
  import json
  out = api.port("betavae", _save(tmp_path, _random_state(latent=8)), str(tmp_path / "out")).out_dir
  meta_path = os.path.join(out, checkpoint.METADATA_FILE)
  meta = json.load(open(meta_path))
  meta["model_config"]["latent_dim"] = 9
  json.dump(meta, open(meta_path, "w"))
  with pytest.raises(checkpoint.CheckpointError, match="shape mismatch: params/fc_mu/kernel"):
    checkpoint.load(out)
