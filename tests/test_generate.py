"""--mode=generate: streaming equals the engine, resume after kill, two processes, bad inputs,
another config's workdir, the record encoding and the reader."""

import functools
import json
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest
from PIL import Image

import fake_celeba
from conftest import REPO
from jaxvae import api, celeba, checkpoint, data, generated, models, options, outputs, sampling
from jaxvae.generate import generate as generate_with_faces, source_keys
from random_weights import randomize_flax

K, B = 3, 4  # Variations, sources per compiled call.
# The fixtures are synthetic images of assorted sizes, not photos of faces: cropped as they are
# (tests/test_faces.py covers generate with face alignment).
generate = functools.partial(generate_with_faces, align="off")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
  """A Beta-VAE checkpoint with random weights and BatchNorm statistics (latent 8)."""
  model = models.build("betavae", latent_dim=8)
  variables = randomize_flax(models.init_variables(model, jax.random.key(1)), 0)
  return checkpoint.save(str(tmp_path_factory.mktemp("ckpt") / "betavae"), "betavae", model,
                         variables)


@pytest.fixture(scope="module")
def vae(ckpt):
  return api.load(ckpt)


def _write_faces(folder, n: int, seed: int = 0) -> list[str]:
  """n smooth random images of assorted sizes and formats: their file names."""
  rng = np.random.default_rng(seed)
  os.makedirs(folder, exist_ok=True)
  names = []
  for i in range(n):
    w, h = [(178, 218), (100, 80), (64, 64)][i % 3]
    pixels = np.asarray(Image.fromarray(rng.integers(0, 256, (5, 4, 3), np.uint8))
                        .resize((w, h), Image.BICUBIC))
    names.append(f"face{i:02d}.{'png' if i % 2 else 'jpg'}")
    Image.fromarray(pixels).save(os.path.join(folder, names[-1]))
  return names


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
  folder = str(tmp_path_factory.mktemp("faces"))
  return folder, _write_faces(folder, 7)


def _read_all(workdir, **kw) -> list[dict]:
  source = generated.open(str(workdir), **kw)
  return [source[i] for i in range(len(source))]


def _parse(record: bytes) -> dict:
  """The documented JVR1 encoding, parsed independently of jaxvae.generated."""
  assert record[:4] == b"JVR1"
  (size,) = struct.unpack("<I", record[4:8])
  header = json.loads(record[8:8 + size].decode())
  out, offset = {"source_id": header["source_id"], "variation": header["variation"]}, 8 + size
  for name, dtype, shape, nbytes in header["fields"]:
    out[name] = np.frombuffer(record[offset:offset + nbytes], dtype).reshape(shape)
    offset += nbytes
  assert offset == len(record)
  return out


def test_streaming_equals_variations_given_the_same_keys(vae, faces, tmp_path):
  """generate over files (batches of 4, 2 sources per shard) = variations on all at once."""
  folder, names = faces
  summary = generate(vae, folder, str(tmp_path), K, seed=5, batch_size=B, shard_size=2 * K,
                     save_latents=True)
  assert summary["complete"] and summary["records"] == 7 * K and summary["num_shards"] == 4
  records = _read_all(tmp_path)
  assert [(r["source_id"], r["variation"]) for r in records] == [(n, k) for n in names
                                                                   for k in range(K)]
  images = data.load([os.path.join(folder, n) for n in names],
                     models.get_info("betavae").celeba_box).images
  keys = source_keys(5, names)
  want = sampling.keyed_variations(vae.model, vae.params, images, keys, K, vae.options(),
                                   latents=True)
  assert np.array_equal(outputs.to_uint8(sampling.variations(
      vae.model, vae.params, images, None, K, vae.options(), keys=keys)),
      outputs.to_uint8(want.images))
  got = np.stack([r["image"] for r in records]).reshape(7, K, 64, 64, 3)
  assert np.array_equal(got, outputs.to_uint8(want.images))
  for name in ("mean", "logvar", "z"):
    np.testing.assert_allclose(np.stack([r[name] for r in records]).reshape(7, K, -1),
                               getattr(want, name), atol=1e-6)


def test_record_keys_follow_the_documented_rule():
  """image key = fold_in x 4 of key(seed) with the first 16 bytes of sha256(id), big-endian."""
  import hashlib  # pylint: disable=import-outside-toplevel
  ids = ["000001.jpg", "sub/face.png", "bundled:astronaut"]
  for i, got in zip(ids, source_keys(7, ids)):
    key = jax.random.key(7)
    digest = hashlib.sha256(i.encode()).digest()
    for j in range(4):
      key = jax.random.fold_in(key, int.from_bytes(digest[4 * j:4 * j + 4], "big"))
    assert np.array_equal(jax.random.key_data(got), jax.random.key_data(key))


def test_reader_round_trip_every_format(vae, faces, tmp_path):
  """The raw bytes parse as documented (grain's ArrayRecordDataSource, no jaxvae decoder), and
  PNG-encoded records and the png folder format read back the same images."""
  import grain  # pylint: disable=import-outside-toplevel
  folder, _ = faces
  runs = {}
  for fmt, enc in (("array_record", "raw"), ("array_record", "png"), ("png", "raw")):
    out = tmp_path / f"{fmt}-{enc}"
    generate(vae, folder, str(out), K, batch_size=B, shard_size=3 * K, format=fmt,
             image_encoding=enc, save_latents=True)
    runs[fmt, enc] = _read_all(out, verify=True)
  manifest = json.load(open(tmp_path / "array_record-raw" / "generate" / "manifest.json"))
  paths = [str(tmp_path / "array_record-raw" / "generate" / s["file"])
           for _, s in sorted(manifest["shards"].items(), key=lambda kv: int(kv[0]))]
  raw = grain.sources.ArrayRecordDataSource(paths)
  parsed = [_parse(raw[i]) for i in range(len(raw))]
  reference = runs["array_record", "raw"]
  assert len(parsed) == len(reference) == 7 * K
  for p, *others in zip(parsed, reference, runs["array_record", "png"], runs["png", "raw"]):
    for r in others:
      assert (r["source_id"], r["variation"]) == (p["source_id"], p["variation"])
      assert np.array_equal(r["image"], p["image"]) and r["image"].dtype == np.uint8
      for name in ("mean", "logvar", "z"):
        assert np.array_equal(r[name], p[name])
  assert list(grain.MapDataset.source(generated.open(str(tmp_path / "png-raw")))
              .batch(5)[0]["image"].shape) == [5, 64, 64, 3]
  for fmt in ("array_record-raw", "png-raw"):  # As grain sends sources to worker processes.
    again = pickle.loads(pickle.dumps(generated.open(str(tmp_path / fmt))))
    assert again[5]["source_id"] == reference[5]["source_id"]
    assert np.array_equal(again[5]["image"], reference[5]["image"])
  root = tmp_path / "png-raw" / "generate"
  index = (root / "index.csv").read_text().splitlines()  # All shards' rows, in order.
  assert index[0] == "file,source_id,variation" and len(index) == 1 + 7 * K
  assert [line.split(",")[1:] for line in index[1:]] == [
      [r["source_id"], str(r["variation"])] for r in reference]
  assert all(np.array_equal(np.asarray(Image.open(root / line.split(",")[0])), r["image"])
             for line, r in zip(index[1:], reference))
  for latents in root.glob("*/latents.npy"):  # Cut short: named, not read past its end.
    latents.write_bytes(latents.read_bytes()[:-4])
  damaged = generated.open(str(tmp_path / "png-raw"))
  with pytest.raises(generated.GeneratedError, match="latents.npy is truncated at record"):
    damaged[len(damaged) - 1]  # pylint: disable=pointless-statement


def test_unreadable_inputs_are_listed_and_skipped(vae, tmp_path):
  folder = tmp_path / "in"
  names = _write_faces(str(folder), 3)
  (folder / "broken.jpg").write_bytes(open(folder / names[0], "rb").read()[:200])
  (folder / "empty.png").write_bytes(b"")
  (folder / "notes.txt").write_text("not an image")
  summary = generate(vae, str(folder), str(tmp_path / "out"), K, batch_size=B, shard_size=2 * K)
  manifest = json.load(open(tmp_path / "out" / "generate" / "manifest.json"))
  assert manifest["complete"] and manifest["counts"]["records"] == 3 * K
  assert sorted(s["source"] for s in manifest["skipped"]) == ["broken.jpg", "empty.png",
                                                               "notes.txt"]
  assert all(s["reason"] for s in manifest["skipped"]) and summary["skipped"] == 3
  assert sorted({r["source_id"] for r in _read_all(tmp_path / "out")}) == sorted(names)
  # Nothing readable at all: still not fatal, an empty output that says so.
  bad = tmp_path / "bad"
  bad.mkdir()
  (bad / "x.jpg").write_bytes(b"\xff\xd8 nope")
  summary = generate(vae, str(bad), str(tmp_path / "out-bad"), K, batch_size=B)
  assert summary["records"] == 0 and summary["skipped_inputs"][0]["source"] == "x.jpg"


def test_workdir_holding_another_config_is_refused(vae, faces, tmp_path):
  folder, _ = faces
  generate(vae, folder, str(tmp_path), K, seed=0, batch_size=B, shard_size=3 * K, max_images=3)
  with pytest.raises(options.ConfigError) as e:
    generate(vae, folder, str(tmp_path), K, seed=1, batch_size=B, shard_size=3 * K, max_images=4)
  assert "seed: 0 in the workdir, 1 now" in str(e.value)
  assert "sources.count: 3 in the workdir, 4 now" in str(e.value) and "--overwrite" in str(e.value)
  again = generate(vae, folder, str(tmp_path), K, seed=0, batch_size=B, shard_size=3 * K,
                   max_images=3)  # Same config: already complete, nothing to do.
  assert again["complete"] and again["process_0"]["records"] == 0
  replaced = generate(vae, folder, str(tmp_path), K, seed=1, batch_size=B, shard_size=3 * K,
                      max_images=4, overwrite=True)
  assert replaced["records"] == 4 * K


def test_source_ids_and_keys_do_not_depend_on_position(vae, faces, tmp_path):
  """A file alone and among others, and a CelebA tree read from the official files and the
  Kaggle CSVs: same ids, same record bytes; CelebA attributes ride along."""
  folder, names = faces
  alone = tmp_path / "alone"
  os.makedirs(alone / "sub")
  os.link(os.path.join(folder, names[4]), alone / "sub" / names[4])
  generate(vae, str(alone / "sub" / names[4]), str(tmp_path / "a"), K, batch_size=B)
  generate(vae, os.path.join(folder, "*"), str(tmp_path / "b"), K, batch_size=B)
  a = _read_all(tmp_path / "a")
  b = [r for r in _read_all(tmp_path / "b") if r["source_id"] == names[4]]
  assert len(a) == K and all(np.array_equal(x["image"], y["image"]) for x, y in zip(a, b))
  fake = fake_celeba.write_fake_celeba(str(tmp_path / "celeba"), n=10, csv=True)
  os.remove(os.path.join(fake.root, "img_align_celeba", fake.names[9]))  # missing: skipped
  ds = celeba.open_celeba(fake.root, "all", box=models.get_info("betavae").celeba_box,
                          check_images=False)
  generate(vae, ds, str(tmp_path / "c"), K, batch_size=B, shard_size=4 * K, save_latents=True)
  records = _read_all(tmp_path / "c")
  assert [r["source_id"] for r in records[::K]] == fake.names[:9]
  want = sampling.keyed_variations(  # CelebA's uint8 path = the float loads the other modes use.
      vae.model, vae.params, ds.load_batch(np.arange(9)), source_keys(0, fake.names[:9]), K,
      vae.options(), as_uint8=True)
  assert np.array_equal(np.stack([r["image"] for r in records]).reshape(want.images.shape),
                        np.asarray(want.images))
  for r in records:
    assert np.array_equal(r["attributes"], fake.attributes[fake.names.index(r["source_id"])])
  manifest = json.load(open(tmp_path / "c" / "generate" / "manifest.json"))
  assert [s["source"] for s in manifest["skipped"]] == [fake.names[9]]
  for name in ("list_eval_partition.txt", "list_attr_celeba.txt"):
    os.remove(os.path.join(fake.root, name))  # Only the CSVs are left.
  generate(vae, celeba.open_celeba(fake.root, "all", box=models.get_info("betavae").celeba_box,
                                   check_images=False, max_count=3),
           str(tmp_path / "d"), K, batch_size=B)
  assert all(np.array_equal(x["image"], y["image"]) and x["source_id"] == y["source_id"]
             for x, y in zip(_read_all(tmp_path / "d"), records))


def test_a_failed_commit_stops_the_run_and_the_same_call_completes_it(vae, faces, tmp_path,
                                                                     monkeypatch):
  """Shards are committed several at once (pipeline.commits_at_once); one that fails (a full
  disk) stops the run with its error while the others complete, and the same call again writes
  only what is missing: the result equals an undisturbed run's."""
  from jaxvae.generate import shards as shards_lib  # pylint: disable=import-outside-toplevel
  folder, _ = faces
  commit = shards_lib.ArrayRecordShard.commit

  def full_disk(self):
    if self.name.startswith("shard-00001-"):
      raise OSError(28, "No space left on device")
    return commit(self)

  monkeypatch.setattr(shards_lib.ArrayRecordShard, "commit", full_disk)
  with pytest.raises(OSError, match="No space left on device"):
    generate(vae, folder, str(tmp_path / "a"), K, batch_size=B, shard_size=2 * K)
  listed = json.load(open(tmp_path / "a" / "generate" / "manifest.json"))["shards"]
  assert "1" not in listed and "0" in listed
  monkeypatch.undo()
  summary = generate(vae, folder, str(tmp_path / "a"), K, batch_size=B, shard_size=2 * K)
  assert summary["complete"] and summary["process_0"]["shards"] == 4 - len(listed)
  generate(vae, folder, str(tmp_path / "b"), K, batch_size=B, shard_size=2 * K)
  assert _shard_bytes(tmp_path / "a") == _shard_bytes(tmp_path / "b")


def test_batch_that_does_not_fit_in_memory_is_refused_before_compute(vae, faces, tmp_path):
  with pytest.raises(options.ConfigError, match="lower config.batch_size"):
    generate(vae, faces[0], str(tmp_path), 4096, batch_size=65536, shard_size=4096)
  assert not os.path.exists(tmp_path / "generate")


# The CLI in subprocesses: two host devices per process as main.py sets up, batches of 4.

_SLOW_MAIN = textwrap.dedent("""
    import sys, time
    from jaxvae import schedule
    schedule.configure_xla_flags()
    import main
    from absl import app
    from jaxvae.generate import pipeline
    write = pipeline.Writer._write
    def slow(self, *args):  # Slow enough to be stopped mid-run.
      time.sleep(0.3)
      return write(self, *args)
    pipeline.Writer._write = slow
    app.run(main.main, argv=["main.py", *sys.argv[1:]], flags_parser=main.parse_flags)
""")


def _cli(ckpt, celeba_root, workdir, *extra):
  return ["--config=configs/betavae.py", "--mode=generate", f"--workdir={workdir}",
          f"--config.checkpoint={ckpt}", f"--config.celeba={celeba_root}", "--config.split=all",
          f"--config.num_variations={K}", f"--config.batch_size={B}",
          f"--config.generate.shard_size={8 * K}", "--config.generate.save_latents=True",
          "--config.seed=3", *extra]


def _env():
  return {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}


def _shard_bytes(workdir) -> dict[str, bytes]:
  root = os.path.join(workdir, "generate")
  return {f: open(os.path.join(root, f), "rb").read() for f in sorted(os.listdir(root))
          if f.startswith("shard-")}


def _committed(workdir) -> int:
  path = os.path.join(workdir, "generate", "manifest.json")
  try:
    return len(json.load(open(path))["shards"])
  except (OSError, ValueError):
    return 0


@pytest.fixture(scope="module")
def celeba_tree(tmp_path_factory):
  return fake_celeba.write_fake_celeba(str(tmp_path_factory.mktemp("celeba")), n=38)


@pytest.fixture(scope="module")
def reference(ckpt, celeba_tree, tmp_path_factory):
  """An uninterrupted one-process run: 5 shards of 8, 8, 8, 8 and 6 sources (2 batches each;
  the last one 2 sources and padding)."""
  workdir = str(tmp_path_factory.mktemp("reference"))
  proc = subprocess.run([sys.executable, "main.py", *_cli(ckpt, celeba_tree.root, workdir)],
                        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr
  assert "5/5 shards, 114 records" in proc.stderr
  return _shard_bytes(workdir)


def _start_slow(ckpt, celeba_root, workdir, *extra):
  return subprocess.Popen([sys.executable, "-c", _SLOW_MAIN, *_cli(ckpt, celeba_root, workdir,
                                                                   *extra)],
                          cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)


def _temporary(workdir) -> list[str]:
  return [f for f in os.listdir(os.path.join(workdir, "generate")) if f.startswith(".tmp")]


def _children(pid: int) -> list[int]:
  """Live (not zombie) processes whose parent is `pid`."""
  found = []
  for entry in os.listdir("/proc"):
    try:
      status = open(f"/proc/{entry}/status").read()
    except OSError:
      continue
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    if fields.get("PPid", "").strip() == str(pid) and not fields["State"].startswith("Z"):
      found.append(int(entry))
  return found


def _alive(pid: int) -> bool:
  try:
    return not open(f"/proc/{pid}/status").read().split("State:\t")[1].startswith("Z")
  except OSError:
    return False


def _wait(proc, ready) -> None:
  deadline = time.time() + 240
  while not ready():
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    assert time.time() < deadline, "the run did not get there in time"
    time.sleep(0.02)


def test_interrupted_and_killed_runs_resume_byte_identical(ckpt, celeba_tree, reference,
                                                           tmp_path):
  """SIGINT mid-shard: exit 130, a message, the open shard discarded; SIGKILL mid-shard (its
  temporary file left behind; its reading processes exit too); then a plain rerun finishes:
  every shard equals the uninterrupted run's, byte for byte."""
  workdir = str(tmp_path)
  processes = ("--config.generate.reader=processes", "--config.generate.workers=2")
  proc = _start_slow(ckpt, celeba_tree.root, workdir, *processes)
  _wait(proc, lambda: _committed(workdir) >= 1 and _temporary(workdir))
  proc.send_signal(signal.SIGINT)
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == 130, err[-3000:]
  kept = _committed(workdir)
  assert f"interrupted: {kept} of 5 shards" in err and "Run the same command again to resume" in err
  assert 1 <= kept < 5 and not _temporary(workdir)
  proc = _start_slow(ckpt, celeba_tree.root, workdir, *processes)
  _wait(proc, lambda: _committed(workdir) > kept and _temporary(workdir))
  workers = _children(proc.pid)
  assert len(workers) >= 2, workers  # The reading processes (and multiprocessing's tracker).
  proc.kill()
  proc.communicate(timeout=60)
  deadline = time.time() + 10
  while any(_alive(w) for w in workers) and time.time() < deadline:
    time.sleep(0.1)
  assert not [w for w in workers if _alive(w)], "reading processes outlived their killed run"
  before = _committed(workdir)
  assert before < 5 and _temporary(workdir)
  done = subprocess.run([sys.executable, "main.py", *_cli(ckpt, celeba_tree.root, workdir)],
                        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr
  assert f"{before} already committed" in done.stderr
  assert _shard_bytes(workdir) == reference and not _temporary(workdir)


def test_two_processes_equal_one(ckpt, celeba_tree, reference, tmp_path):
  """jax.distributed, 2 processes x 2 host devices: shards i % 2 == p each, no lockstep; the
  union is byte-identical to the one-process run (same per-device batch)."""
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  procs = [subprocess.Popen(
      [sys.executable, "main.py", *_cli(ckpt, celeba_tree.root, str(tmp_path),
                                        f"--config.generate.distributed=127.0.0.1:{port},2,{p}")],
      cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
      for p in (0, 1)]
  errs = []
  for p in procs:
    errs.append(p.communicate(timeout=300)[1])
    assert p.returncode == 0, errs[-1][-3000:]
  assert "3 to write here (process 0 of 2" in errs[0]
  assert "2 to write here (process 1 of 2" in errs[1]
  assert _shard_bytes(tmp_path) == reference
  manifest = json.load(open(tmp_path / "generate" / "manifest.json"))
  assert manifest["complete"] and manifest["counts"]["records"] == 114


def test_reading_processes_write_what_reading_threads_write(vae, ckpt, celeba_tree, reference,
                                                           tmp_path):
  """Sources read by 2 spawned worker processes (images sent back as uint8): files, unreadable
  ones among them, give the reading threads' shard bytes and skip reasons; a CelebA tree through
  main.py gives the reference run's bytes."""
  folder = tmp_path / "in"
  _write_faces(str(folder), 5)
  (folder / "broken.jpg").write_bytes(b"\xff\xd8 nope")
  runs = {}
  for reader in ("threads", "processes"):
    out = tmp_path / reader
    summary = generate(vae, str(folder), str(out), K, batch_size=B, shard_size=2 * K, workers=2,
                       reader=reader)
    assert f"read ({reader}, CPU)" in summary["process_0"]["stage_seconds"], summary
    skipped = json.load(open(out / "generate" / "manifest.json"))["skipped"]
    runs[reader] = _shard_bytes(out), skipped
  assert runs["processes"] == runs["threads"] and len(runs["threads"][0]) == 3
  assert [s["source"] for s in runs["threads"][1]] == ["broken.jpg"]
  workdir = tmp_path / "celeba"
  proc = subprocess.run(
      [sys.executable, "main.py", *_cli(ckpt, celeba_tree.root, str(workdir),
                                        "--config.generate.reader=processes",
                                        "--config.generate.workers=2")],
      cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert _shard_bytes(workdir) == reference
  with pytest.raises(options.ConfigError, match="reader must be one of"):
    generate(vae, str(folder), str(tmp_path / "x"), K, reader="forks")


def test_tfds_sources_are_read_in_processes_as_in_threads(vae, tmp_path):
  """A prepared tfds celeb_a (the stock builder's array_record) pickles into reading processes,
  which write the reading threads' shard bytes."""
  pytest.importorskip("importlib_resources", reason="tfds needs it to prepare a dataset")
  fake = fake_celeba.write_fake_celeba(str(tmp_path / "celeba"), n=8, tfds_extras=True)
  data_dir = str(tmp_path / "tfds")
  fake_celeba.prepare_tfds(fake, data_dir)
  runs = {}
  for reader in ("threads", "processes"):
    ds = celeba.open_celeba("tfds:celeb_a", "all", box=models.get_info("betavae").celeba_box,
                            tfds_data_dir=data_dir)
    summary = generate(vae, ds, str(tmp_path / reader), K, batch_size=B, shard_size=3 * K,
                       workers=2, reader=reader)
    assert f"read ({reader}, CPU)" in summary["process_0"]["stage_seconds"], summary
    runs[reader] = _shard_bytes(tmp_path / reader)
  assert runs["processes"] == runs["threads"] and len(runs["threads"]) == 3


def test_reading_processes_of_an_unguarded_script_fail_with_a_clear_message(ckpt, tmp_path):
  """A script without `if __name__ == "__main__":` starts generate again in every spawned reading
  process; the run stops with a message that says what to do, not a pool's traceback alone."""
  folder = tmp_path / "in"
  _write_faces(str(folder), 2)
  script = tmp_path / "unguarded.py"
  script.write_text(textwrap.dedent(f"""
      from jaxvae import api
      from jaxvae.generate import generate
      generate(api.load({str(ckpt)!r}), {str(folder)!r}, {str(tmp_path / 'out')!r}, 2,
               batch_size=2, workers=2, reader="processes", align="off")
  """))
  proc = subprocess.run([sys.executable, str(script)], cwd=REPO, capture_output=True, text=True,
                        env={**_env(), "PYTHONPATH": REPO}, timeout=300)
  assert proc.returncode != 0
  assert 'keep its work under `if __name__ == "__main__":`' in proc.stderr, proc.stderr[-3000:]
