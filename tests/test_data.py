"""Input handling: files, folders, globs, formats, crops and unreadable files."""

import cv2
import numpy as np
import pytest
from PIL import Image

from jaxvae import data

BOX = (0, 30, 178, 208)


def _gradient(h, w):
  y, x = np.mgrid[0:h, 0:w]
  return np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1),
                   (x + y) * 255 // max(h + w - 2, 1)], -1).astype(np.uint8)


def test_celeba_size_uses_the_model_box_and_pil_bilinear(tmp_path):
  rgb = _gradient(218, 178)
  Image.fromarray(rgb).save(tmp_path / "a.png")
  got = data.load(str(tmp_path / "a.png"), BOX).images[0]
  expected = np.asarray(Image.fromarray(rgb).crop(BOX).resize((64, 64), Image.BILINEAR)) / 255.0
  np.testing.assert_allclose(got, expected, atol=1e-6)


def test_other_sizes_use_the_centred_square(tmp_path):
  rgb = _gradient(100, 300)
  Image.fromarray(rgb).save(tmp_path / "wide.png")
  got = data.load(str(tmp_path / "wide.png"), BOX).images[0]
  square = rgb[:, 100:200]
  expected = np.asarray(Image.fromarray(square).resize((64, 64), Image.BILINEAR)) / 255.0
  np.testing.assert_allclose(got, expected, atol=1e-6)


def test_grayscale_rgba_16bit_and_jpeg(tmp_path):
  rgb = _gradient(80, 80)
  gray = rgb[..., 0]
  Image.fromarray(gray).save(tmp_path / "gray.png")
  Image.fromarray(np.dstack([rgb, np.full((80, 80), 128, np.uint8)])).save(tmp_path / "rgba.png")
  cv2.imwrite(str(tmp_path / "deep.png"), (rgb[..., ::-1].astype(np.uint16) * 257))
  Image.fromarray(rgb).save(tmp_path / "photo.jpg", quality=95)
  inputs = data.load(str(tmp_path), BOX)
  assert [n.split("/")[-1] for n in inputs.names] == ["deep.png", "gray.png", "photo.jpg",
                                                      "rgba.png"]
  ref = np.asarray(Image.fromarray(rgb).resize((64, 64), Image.BILINEAR)) / 255.0
  deep, gray_out, jpeg, rgba = inputs.images
  np.testing.assert_allclose(deep, ref, atol=1e-6)  # 16-bit: exact after scaling to 8-bit.
  np.testing.assert_allclose(rgba, ref, atol=1e-6)  # Alpha dropped.
  np.testing.assert_allclose(gray_out, np.repeat(ref[..., :1], 3, -1), atol=1e-6)
  assert np.abs(jpeg - ref).mean() < 0.02  # JPEG is lossy.


def test_globs_and_unreadable_files_are_skipped_by_name(tmp_path):
  Image.fromarray(_gradient(64, 64)).save(tmp_path / "ok.png")
  (tmp_path / "notes.png").write_text("not an image")
  (tmp_path / "empty.jpg").write_bytes(b"")
  inputs = data.load(str(tmp_path / "*.*g"), BOX)
  assert [n.split("/")[-1] for n in inputs.names] == ["ok.png"]
  assert sorted(p.split("/")[-1] for p, _ in inputs.skipped) == ["empty.jpg", "notes.png"]
  assert all("not a readable image" in why for _, why in inputs.skipped)


def test_clear_errors(tmp_path):
  (tmp_path / "empty").mkdir()
  with pytest.raises(data.InputError, match="input folder .*empty is empty"):
    data.load(str(tmp_path / "empty"), BOX)
  with pytest.raises(data.InputError, match="does not exist"):
    data.load(str(tmp_path / "missing.jpg"), BOX)
  with pytest.raises(data.InputError, match="matches no file"):
    data.load(str(tmp_path / "*.png"), BOX)
  (tmp_path / "bad.png").write_text("x")
  with pytest.raises(data.InputError, match="no readable input image.*bad.png"):
    data.load(str(tmp_path / "bad.png"), BOX)
  with pytest.raises(data.InputError, match="unknown bundled portrait"):
    data.load("bundled:nobody", BOX)


def test_bundled_portraits_are_the_default():
  inputs = data.load("", BOX)
  assert inputs.names == ["bundled:astronaut", "bundled:grace_hopper"]
  assert inputs.images.shape == (2, 64, 64, 3) and inputs.images.dtype == np.float32
  assert 0.0 <= inputs.images.min() and inputs.images.max() <= 1.0
