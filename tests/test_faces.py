"""jaxvae.faces: MTCNN vs facenet-pytorch 2.6.0, CelebA alignment vs MATLAB, and real photos."""

import json
import os
import shutil
import zipfile

import numpy as np
import pytest
from PIL import Image

from jaxvae import checkpoint, data, faces, models, outputs, sampling, weights
from jaxvae.faces import align, mtcnn, nets

PARITY_TOL = 1e-5  # fp32 max abs difference of the nets against torch.
CANVAS = 768  # Side of the canvases the transformed photos are placed in.
# (rotation in degrees, scale, where the photo's centre lands in the canvas).
TRANSFORMS = [(15.0, 0.8, (330, 350)), (-12.0, 1.3, (420, 400)), (8.0, 0.6, (250, 500))]


def _fail_or_skip(message: str):
  if os.environ.get("CI", "").lower() == "true":
    pytest.fail(message)
  pytest.skip(message)


@pytest.fixture(scope="session")
def mtcnn_wheel():
  """The facenet-pytorch wheel, fetched as a user's first run fetches it (pip, sha256 checked)."""
  from port import mtcnn as port_mtcnn, sources
  try:
    return port_mtcnn.resolve("mtcnn")
  except sources.SourceError as e:
    _fail_or_skip(f"the facenet-pytorch wheel is not available: {e}")


@pytest.fixture(scope="session")
def mtcnn_dir(mtcnn_wheel, tmp_path_factory):
  from port import api
  result = api.port("mtcnn", mtcnn_wheel, str(tmp_path_factory.mktemp("mtcnn") / "ckpt"),
                    check_parity=True)
  assert result.verified and result.out_dir
  return result.out_dir


@pytest.fixture(scope="session")
def torch_nets(mtcnn_wheel):
  from port import mtcnn as port_mtcnn
  from port.torch_ref import mtcnn as torch_mtcnn
  return torch_mtcnn.load(port_mtcnn.read_state_dicts(mtcnn_wheel))


@pytest.fixture(scope="session")
def photos():
  return {name: loader() for name, (loader, _) in data.BUNDLED.items()}


def _torch_apply(module, x_nhwc):
  import torch
  with torch.inference_mode():
    out = module(torch.from_numpy(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2))))
  return [o.numpy().transpose(0, 2, 3, 1) if o.ndim == 4 else o.numpy() for o in out]


def _flax_apply(name, variables, x, *args):
  import jax
  with jax.default_matmul_precision("highest"):
    return [np.asarray(o) for o in jax.jit(nets.NETS[name][0]().apply)(variables, x, *args)]


def _compare_nets(torch_modules, variables, seed):
  """Max abs difference per net output, torch vs flax, on normalized random images (the port's
  own --verify comparison, at another seed and batch)."""
  from port import mtcnn as port_mtcnn
  return port_mtcnn.net_diffs(torch_modules, variables, seed, batch=6)


def _random_torch_nets(seed=0):
  import torch
  from port.torch_ref import mtcnn as torch_mtcnn
  torch.manual_seed(seed)
  modules = {name: cls().eval() for name, cls in torch_mtcnn.NETS.items()}
  with torch.no_grad():
    for module in modules.values():
      for key, t in module.state_dict().items():
        if "prelu" in key:  # torch initialises every slope to 0.25: draw them per channel.
          t.copy_(torch.rand_like(t) * 0.5)
        elif key.endswith(".bias"):
          t.copy_(0.1 * torch.randn_like(t))
  return modules


def test_nets_match_torch_with_random_weights():
  from port import mtcnn as port_mtcnn
  modules = _random_torch_nets()
  state_dicts = {n: {k: v.numpy() for k, v in m.state_dict().items()} for n, m in modules.items()}
  variables = port_mtcnn.convert_state_dicts(state_dicts)
  diffs = _compare_nets(modules, variables, seed=1)
  assert max(diffs.values()) < PARITY_TOL, diffs


def test_packed_pnet_equals_torch_on_each_level_alone():
  """P-Net on levels packed into one padded canvas (garbage around them) equals torch per level."""
  from port import mtcnn as port_mtcnn
  modules = _random_torch_nets(seed=2)
  state_dicts = {n: {k: v.numpy() for k, v in m.state_dict().items()} for n, m in modules.items()}
  variables = port_mtcnn.convert_state_dicts(state_dicts)
  rng = np.random.default_rng(3)
  sizes = [(67, 53), (47, 38), (33, 27), (23, 19), (16, 13), (12, 12)]  # odd sides: ceil pools
  offsets, (h, w) = mtcnn.pack(sizes)
  canvas = rng.uniform(-50, 50, (1, mtcnn.bucket(h), mtcnn.bucket(w), 3)).astype(np.float32)
  mask = np.zeros((canvas.shape[1] - 2, canvas.shape[2] - 2), bool)
  levels = []
  for (hs, ws), (y, x) in zip(sizes, offsets):
    levels.append(rng.uniform(-1, 1, (1, hs, ws, 3)).astype(np.float32))
    canvas[:, y:y + hs, x:x + ws] = levels[-1]
    mask[y:y + hs - 2, x:x + ws - 2] = True
  assert len({x for _, x in offsets}) > 2  # The levels fill several columns.
  got = _flax_apply("pnet", variables["pnet"], canvas, mask)
  for level, (y, x) in zip(levels, offsets):
    want = _torch_apply(modules["pnet"], level)
    oh, ow = want[0].shape[1:3]
    for wt, g in zip(want, got):
      assert np.abs(wt - g[:, y // 2:y // 2 + oh, x // 2:x // 2 + ow]).max() < PARITY_TOL, (y, x)


def test_real_weights_match_torch(mtcnn_dir, torch_nets):
  variables = checkpoint.load_tree(mtcnn_dir, nets.abstract_variables())
  diffs = _compare_nets(torch_nets, variables, seed=4)
  assert max(diffs.values()) < PARITY_TOL, diffs


def test_port_names_missing_and_unexpected_tensors(tmp_path):
  from port import convert, mtcnn as port_mtcnn, sources
  modules = _random_torch_nets()
  state_dicts = {n: {k: v.numpy() for k, v in m.state_dict().items()} for n, m in modules.items()}
  del state_dicts["rnet"]["dense4.bias"]
  state_dicts["onet"]["extra.weight"] = np.zeros(3, np.float32)
  with pytest.raises(convert.PortError, match=r"rnet: missing: dense4.bias[\s\S]*onet: unexpected: "
                                              r"extra.weight"):
    port_mtcnn.convert_state_dicts(state_dicts)
  not_zip = tmp_path / "x.whl"
  not_zip.write_bytes(b"not a wheel")
  with pytest.raises(sources.SourceError, match="not a zip"):
    port_mtcnn.read_state_dicts(str(not_zip))
  empty = tmp_path / "empty.whl"
  with zipfile.ZipFile(empty, "w") as z:
    z.writestr("facenet_pytorch/__init__.py", "")
  with pytest.raises(sources.SourceError, match="facenet_pytorch/data/pnet.pt"):
    port_mtcnn.read_state_dicts(str(empty))


# ------------------------------------------------------------------ the cascade vs the original


@pytest.fixture(scope="session")
def original_detect_face(mtcnn_wheel, torch_nets):
  """facenet-pytorch 2.6.0's own detect_face, read from the wheel (torchvision's NMS stubbed)."""
  import facenet_reference
  return facenet_reference.load(mtcnn_wheel, torch_nets)


def _pair(photos):
  """The two portraits side by side on one 600 x 1024 canvas."""
  a, g = photos["astronaut"], photos["grace_hopper"]
  return np.concatenate([np.pad(a, ((0, g.shape[0] - a.shape[0]), (0, 0), (0, 0))), g], axis=1)


def test_cascade_matches_facenet_pytorch(mtcnn_dir, photos, original_detect_face):
  """Boxes, scores and landmarks as facenet-pytorch's detect_face, on real photos."""
  import torch
  cases = [*photos.items(), ("pair", _pair(photos))]
  threads = torch.get_num_threads()
  torch.set_num_threads(1)  # Its many small ops only contend with the other test worker.
  try:
    originals = [original_detect_face(rgb) for _, rgb in cases]
  finally:
    torch.set_num_threads(threads)
  for (name, rgb), (want_boxes, want_points) in zip(cases, originals):
    got = faces.detect(rgb, spec=mtcnn_dir)
    assert len(got) == len(want_boxes), name
    for f, b, p in zip(got, want_boxes, want_points):
      assert np.abs(f.box - b[:4]).max() < 0.01, (name, f.box, b)
      assert abs(f.score - b[4]) < 1e-5, name
      assert np.abs(f.landmarks - p).max() < 0.01, (name, f.landmarks, p)


# ------------------------------------------------------------------ CelebA alignment vs MATLAB


def test_fit_similarity_matches_matlab_cp2tform():
  """MATLAB's own output, as printed in face.evoLVe's matlab_cp2tform.py (also in facenet-pytorch):
  cp2tform([0 0; 6 3; -2 5], [-1 -1; 0 -10; 4 4], 'similarity') chose the non-reflective fit
  with T = [-0.0764 -1.6190 0; 1.6190 -0.0764 0; -3.2156 0.0290 1] and
  Tinv = [-0.0291 0.6163 0; -0.6163 -0.0291 0; -0.0756 1.9826 1] (4 decimals)."""
  tinv = align.fit_similarity(np.array([[0, 0], [6, 3], [-2, 5]]),
                              np.array([[-1, -1], [0, -10], [4, 4]]))
  want_tinv = np.array([[-0.0291, 0.6163, 0], [-0.6163, -0.0291, 0], [-0.0756, 1.9826, 1]])
  want_t = np.array([[-0.0764, -1.6190, 0], [1.6190, -0.0764, 0], [-3.2156, 0.0290, 1]])
  np.testing.assert_allclose(tinv, want_tinv, atol=6e-5)
  np.testing.assert_allclose(np.linalg.inv(tinv), want_t, atol=6e-5)


def test_fit_is_least_squares_in_the_photo_and_exact_on_similar_points():
  rng = np.random.default_rng(5)
  fixed = align.CELEBA_POINTS
  angle, scale, shift = 0.3, 2.5, np.array([200.0, 90.0])
  rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
  exact = fixed @ rot.T + shift
  tinv = align.fit_similarity(exact, fixed)
  np.testing.assert_allclose(np.c_[fixed, np.ones(3)] @ tinv[:, :2], exact, atol=1e-9)
  noisy = exact + rng.normal(0, 3, exact.shape)
  tinv = align.fit_similarity(noisy, fixed)
  residual = np.c_[fixed, np.ones(3)] @ tinv[:, :2] - noisy  # in photo pixels
  x, y = fixed[:, 0], fixed[:, 1]
  # Normal equations of min sum |residual|^2 over (a, b, c, d): the gradient vanishes.
  grad = [np.sum(residual[:, 0] * x + residual[:, 1] * y),
          np.sum(residual[:, 0] * y - residual[:, 1] * x),
          residual[:, 0].sum(), residual[:, 1].sum()]
  np.testing.assert_allclose(grad, 0, atol=1e-7)
  # Rotation and uniform scale, no reflection: [[a, -b], [b, a]] with a positive determinant.
  assert tinv[0, 0] == tinv[1, 1] and tinv[0, 1] == -tinv[1, 0]
  assert np.linalg.det(tinv[:2, :2]) > 0
  # The other direction (a fit of photo -> aligned) is a different transform on noisy points.
  forward = align.fit_similarity(fixed, noisy)
  assert np.abs(np.linalg.inv(forward) - tinv).max() > 1e-3


def _keys(t):
  """MATLAB's cubic kernel (imresize / makeresampler 'cubic'): Keys, a = -0.5."""
  t = np.abs(t)
  return np.where(t <= 1, 1.5 * t**3 - 2.5 * t**2 + 1,
                  np.where(t <= 2, -0.5 * t**3 + 2.5 * t**2 - 4 * t + 2, 0))


def _matlab_align(img, landmarks0):
  """align_face_celeba written out in MATLAB's 1-based terms: imtransform's inverse mapping of
  every output pixel (x = 1..178, y = 1..218), cubic over 4 x 4 taps, 'replicate' padding (taps
  clamped to 1..W, 1..H), rounding to uint8 (half away from zero, saturated)."""
  lm = landmarks0 + 1.0
  tinv = align.fit_similarity(np.stack([lm[0], lm[1], lm[3:5].mean(0)]), align.CELEBA_POINTS)
  x, y = np.meshgrid(np.arange(1, 179, dtype=float), np.arange(1, 219, dtype=float))
  u = x * tinv[0, 0] + y * tinv[1, 0] + tinv[2, 0]
  v = x * tinv[0, 1] + y * tinv[1, 1] + tinv[2, 1]
  out = np.zeros((218, 178, img.shape[2]))
  for m in range(-1, 3):
    rows = np.floor(v) + m
    for n in range(-1, 3):
      cols = np.floor(u) + n
      r = np.clip(rows, 1, img.shape[0]).astype(int) - 1
      c = np.clip(cols, 1, img.shape[1]).astype(int) - 1
      out += (_keys(v - rows) * _keys(u - cols))[..., None] * img[r, c]
  return np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)


def test_align_celeba_matches_matlab_definition():
  rng = np.random.default_rng(6)
  img = rng.integers(0, 256, (90, 70, 3), dtype=np.uint8)  # the frame reaches past every edge
  for landmarks in ([[28, 40], [45, 41], [37, 52], [30, 62], [44, 63]],
                    [[10.3, 20.7], [60.2, 8.1], [40.5, 40.0], [30.1, 75.9], [75.3, 60.4]]):
    landmarks = np.array(landmarks, float)
    got, want = align.align_celeba(img, landmarks), _matlab_align(img, landmarks)
    assert np.abs(got.astype(int) - want).max() <= 1
    assert (got == want).mean() > 0.999


def test_align_celeba_rejects_bad_input():
  with pytest.raises(ValueError, match=r"landmarks must be finite \[5, 2\]"):
    align.align_celeba(np.zeros((10, 10, 3), np.uint8), np.zeros((4, 2)))
  with pytest.raises(ValueError, match="uint8"):
    align.align_celeba(np.zeros((10, 10, 3), np.float32), np.zeros((5, 2)))


# ------------------------------------------------------------------ real photos


def _place(rgb, angle, scale, at):
  """The photo rotated (degrees), scaled and centred at `at` on a gray CANVAS; the 2x3 map used."""
  import cv2
  h, w = rgb.shape[:2]
  m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
  m[:, 2] += np.array(at, float) - np.array([w / 2, h / 2])
  return cv2.warpAffine(rgb, m, (CANVAS, CANVAS), flags=cv2.INTER_LINEAR,
                        borderValue=(128, 128, 128)), m


def _to_photo(points, m):
  """Canvas points [N, 2] back to the untransformed photo through the inverse of m."""
  inv = np.linalg.inv(np.vstack([m, [0, 0, 1]]))
  return points @ inv[:2, :2].T + inv[:2, 2]


def _crop_iou(landmarks_in_photo, hand_box, celeba_box):
  """IoU of the hand-framed box with the bounding box of the model's crop (its box in the aligned
  frame, pixel edges) mapped back into the photo by the alignment's similarity."""
  x0, y0, x1, y1 = (np.array(celeba_box, float) - [0.5, 0.5, 0.5, 0.5])
  corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
  inv = align.celeba_inverse_map(landmarks_in_photo)
  p = np.c_[corners, np.ones(4)] @ inv[:, :2]
  (bx0, by0), (bx1, by1) = p.min(0), p.max(0)
  hx0, hy0, hx1, hy1 = hand_box
  inter = max(0, min(bx1, hx1) - max(bx0, hx0)) * max(0, min(by1, hy1) - max(by0, hy0))
  return inter / ((bx1 - bx0) * (by1 - by0) + (hx1 - hx0) * (hy1 - hy0) - inter)


def test_real_photos_align_like_the_hand_framed_crops(mtcnn_dir, photos, betavae_l200):
  """Each portrait as it is and rotated/scaled/offset on a larger canvas: one face; landmarks
  mapped back to the photo within 3 px of the plain photo's; the model's crop overlaps the
  hand-framed box with IoU >= 0.8; reconstruction MSE <= 1.1 x the hand-framed crop's."""
  celeba_box = models.get_info("betavae").celeba_box
  inputs, hand = [], []
  for name, rgb in photos.items():
    hand_box = data.BUNDLED[name][1]
    hand.append(len(inputs))
    inputs.append(data.preprocess(rgb, hand_box))
    reference = None
    for angle, scale, at in [(0.0, 1.0, None), *TRANSFORMS]:
      image, m = (rgb, np.eye(3)[:2]) if at is None else _place(rgb, angle, scale, at)
      found = faces.align_all(image, spec=mtcnn_dir)
      assert len(found) == 1, (name, angle)
      marks = _to_photo(found[0].landmarks, m)
      if reference is None:
        reference = marks
      distance = np.linalg.norm(marks - reference, axis=1).max()
      assert distance <= 3.0, (name, angle, scale, distance)
      iou = _crop_iou(marks, hand_box, celeba_box)
      assert iou >= 0.8, (name, angle, scale, iou)
      inputs.append(data.preprocess(found[0].image, celeba_box))
  x = np.stack(inputs)
  recon = np.asarray(sampling.reconstruct(betavae_l200.model, betavae_l200.variables, x))
  mse = ((recon - x) ** 2).mean(axis=(1, 2, 3))
  for start, end in zip(hand, [*hand[1:], len(inputs)]):
    assert (mse[start + 1:end] <= 1.1 * mse[start]).all(), (mse[start], mse[start + 1:end])


def test_aligned_face_lands_on_celeba_positions(mtcnn_dir, photos):
  """MTCNN run again on the aligned 178x218 image finds the eyes and mouth where CelebA puts them,
  within 4 px (about 10% of the 37.5 px eye distance): MTCNN's own repeatability, as its
  landmarks depend on the box O-Net is given (up to 3.4 px here between the boxes it picks)."""
  target = align.CELEBA_POINTS - 1.0  # 0-based
  for name, rgb in photos.items():
    aligned = faces.align_all(rgb, spec=mtcnn_dir)[0].image
    assert aligned.shape == (218, 178, 3) and aligned.dtype == np.uint8
    again = faces.detect(aligned, spec=mtcnn_dir)
    assert len(again) == 1, name
    marks = again[0].landmarks
    got = np.stack([marks[0], marks[1], marks[3:5].mean(0)])
    assert np.linalg.norm(got - target, axis=1).max() < 4.0, (name, got)


def test_no_face_and_two_faces(mtcnn_dir, photos):
  rng = np.random.default_rng(7)
  for image in (np.zeros((300, 400, 3), np.uint8), np.full((256, 256, 3), 200, np.uint8),
                rng.integers(0, 256, (256, 320, 3), dtype=np.uint8)):
    assert faces.detect(image, spec=mtcnn_dir) == []
    with pytest.raises(faces.NoFaceError, match="no face found"):
      faces.prepare("blank.png", image, "auto", spec=mtcnn_dir)
  pair = _pair(photos)
  found = faces.detect(pair, spec=mtcnn_dir)
  assert len(found) == 2
  assert sorted(f.box[0] < 512 for f in found) == [False, True]  # one face in each half
  names = [n for n, _ in faces.prepare("pair.png", pair, "auto", spec=mtcnn_dir)]
  assert names == ["pair.png#1", "pair.png#2"]


def test_prepare_modes_and_errors(mtcnn_dir, photos):
  celeba_sized = np.zeros((218, 178, 3), np.uint8)
  missing = "/nonexistent/mtcnn"  # Would fail if prepare tried to load the detector.
  assert faces.prepare("a.jpg", celeba_sized, "auto", spec=missing)[0][1] is celeba_sized
  rgb = photos["astronaut"]
  assert faces.prepare("a.jpg", rgb, "off", spec=missing) == [("a.jpg", rgb)]
  (name, aligned), = faces.prepare("a.jpg", rgb, "celeba", spec=mtcnn_dir)
  assert name == "a.jpg" and aligned.shape == (218, 178, 3)
  with pytest.raises(ValueError, match="align must be one of auto, celeba, off"):
    faces.prepare("a.jpg", rgb, "yes")
  with pytest.raises(ValueError, match=r"RGB uint8 image \[H, W, 3\]"):
    faces.detect(rgb.astype(np.float32), spec=mtcnn_dir)


def test_detections_are_cached_per_file_content(mtcnn_dir, photos, tmp_path, monkeypatch):
  from jaxvae.faces import pipeline
  monkeypatch.setenv("JAXVAE_CACHE", str(tmp_path / "cache"))
  photo = tmp_path / "gh.png"
  import cv2
  cv2.imwrite(str(photo), photos["grace_hopper"][..., ::-1])
  rgb, key = data.decode(str(photo)), faces.file_key(str(photo))
  first = faces.align_all(rgb, spec=mtcnn_dir, key=key)
  assert os.path.isfile(tmp_path / "cache" / "faces" / f"{key}.json")

  def no_detector(*args, **kwargs):
    raise AssertionError("detected again")
  monkeypatch.setattr(pipeline, "detector", no_detector)
  again = faces.align_all(rgb, spec=mtcnn_dir, key=key)
  np.testing.assert_array_equal(again[0].landmarks, first[0].landmarks)
  np.testing.assert_array_equal(again[0].image, first[0].image)
  assert faces.detect(rgb, spec=mtcnn_dir, key=key)[0].score == first[0].face.score
  with pytest.raises(AssertionError, match="detected again"):  # another image, same key stamp
    faces.align_all(rgb[:, :500], spec=mtcnn_dir, key=key)


# ------------------------------------------------------------------ the weight route


def test_load_aux_ports_the_published_name_offline_from_a_mirror(mtcnn_wheel, mtcnn_dir,
                                                                 tmp_path, monkeypatch):
  from port import mtcnn as port_mtcnn
  mirror = tmp_path / "mirror"
  mirror.mkdir()
  shutil.copy(mtcnn_wheel, mirror / "renamed.whl")  # matched by sha256, not by name
  monkeypatch.setenv("JAXVAE_CACHE", str(tmp_path / "cache"))
  monkeypatch.setenv("JAXVAE_MIRROR", str(mirror))
  monkeypatch.setattr(port_mtcnn, "_pip_download", lambda *a: pytest.fail("pip was called"))
  got = weights.load_aux("mtcnn", "mtcnn", nets.abstract_variables())
  want = checkpoint.load_tree(mtcnn_dir, nets.abstract_variables())
  for k, v in checkpoint.flatten(want).items():
    np.testing.assert_array_equal(np.asarray(checkpoint.flatten(got)[k]), np.asarray(v))
  assert os.path.isdir(tmp_path / "cache" / "checkpoints" / "mtcnn")


def test_published_wheel_is_fetched_with_pip_and_checked(tmp_path, monkeypatch):
  from port import mtcnn as port_mtcnn, sources
  monkeypatch.setenv("JAXVAE_CACHE", str(tmp_path / "cache"))
  monkeypatch.delenv("JAXVAE_MIRROR", raising=False)
  try:
    path = port_mtcnn.resolve("mtcnn")
  except sources.SourceError as e:
    _fail_or_skip(f"pip could not fetch the wheel: {e}")
  assert path == str(tmp_path / "cache" / "downloads" / "facenet_pytorch-2.6.0-py3-none-any.whl")
  assert outputs.sha256_file(path) == sources.PUBLISHED["mtcnn"].sha256
  wrong = sources.PUBLISHED["mtcnn"]._replace(sha256="0" * 64)
  monkeypatch.setitem(sources.PUBLISHED, "mtcnn", wrong)
  with pytest.raises(sources.SourceError, match="sha256 mismatch"):
    port_mtcnn.resolve("mtcnn")


def test_align_from_the_cli_on_plain_photos(mtcnn_wheel, photos, tmp_path):
  """--config.align=auto (the default) on photos as users have them: the astronaut as a plain
  512x512 JPEG reconstructs about as well as its hand-framed crop (0.0447), the centre crop
  (align off) much worse; two faces become two inputs; a photo without a face is skipped by
  name; the grid shows the aligned crops."""
  import json

  from conftest import run_cli, shared_file
  folder = tmp_path / "photos"
  folder.mkdir()
  Image.fromarray(photos["astronaut"]).save(folder / "astronaut.jpg", quality=95)
  Image.fromarray(_pair(photos)).save(folder / "pair.png")
  Image.fromarray(np.full((300, 400, 3), 200, np.uint8)).save(folder / "wall.png")
  l200 = shared_file("l200-100.pt")

  def reconstruct(out, *flags):
    result = run_cli("main.py", "--config=configs/betavae.py", "--mode=reconstruct",
                     f"--workdir={out}", f"--config.input={folder}", *flags)
    assert result.returncode == 0, result.stderr
    return result, json.load(open(out / "summary.json"))["reconstruct"]

  port = run_cli("-m", "port", "--model=betavae", f"--source={l200}", f"--out={tmp_path / 'ck'}")
  assert port.returncode == 0, port.stderr
  result, auto = reconstruct(tmp_path / "auto", f"--config.checkpoint={tmp_path / 'ck'}")
  names = [os.path.basename(n) for n in auto["names"]]
  assert names == ["astronaut.jpg", "pair.png#1", "pair.png#2"], names
  assert "wall.png: no face found" in result.stderr
  assert [os.path.basename(s["input"]) for s in auto["skipped"]] == ["wall.png"]
  assert auto["mse"][0] <= 1.1 * 0.0447, auto["mse"]
  _, off = reconstruct(tmp_path / "off", f"--config.checkpoint={tmp_path / 'ck'}",
                       "--config.align=off")
  assert off["mse"][0] > 1.3 * auto["mse"][0], (off["mse"], auto["mse"])
  shown = np.load(tmp_path / "auto" / "reconstruct.npz")["inputs"]
  assert shown.shape == (3, 64, 64, 3) and not np.array_equal(
      shown[0], np.load(tmp_path / "off" / "reconstruct.npz")["inputs"][0])


def test_generate_aligns_photos_one_source_per_face(mtcnn_wheel, photos, tmp_path, ported_dir):
  """--mode=generate on photos: each face is a source (pair.png#1, #2), an aligned CelebA-size
  image passes as it is, a photo without a face is listed as skipped."""
  from jaxvae import api, generate, generated
  folder = tmp_path / "photos"
  folder.mkdir()
  Image.fromarray(_pair(photos)).save(folder / "pair.png")
  Image.fromarray(np.full((218, 178, 3), 120, np.uint8)).save(folder / "aligned.png")
  Image.fromarray(np.full((300, 400, 3), 200, np.uint8)).save(folder / "wall.png")
  vae = api.load(ported_dir("l32-100.pt"))
  summary = generate.generate(vae, str(folder), str(tmp_path / "out"), num_variations=2,
                              batch_size=4, log=lambda s: None)
  source = generated.open(str(tmp_path / "out" / "generate"))
  ids = sorted({source[i]["source_id"] for i in range(len(source))})
  assert ids == ["aligned.png", "pair.png#1", "pair.png#2"], (ids, summary)
  manifest = json.load(open(tmp_path / "out" / "generate" / "manifest.json"))
  assert "wall.png" in json.dumps(manifest["skipped"])
