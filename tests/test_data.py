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


def _opencv_rgb(raw: bytes) -> np.ndarray:
  image = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_UNCHANGED)
  if image.ndim == 2:
    return np.repeat(image[..., None], 3, axis=-1)
  return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def test_jpeg_is_decoded_once_by_pil_with_opencvs_pixels(tmp_path):
  """A JPEG's corruption check (a full PIL decode) is also its decode: for every RGB and
  grayscale kind (subsampling, quality, progressive, odd sizes) its pixels equal OpenCV's decode
  of the same file; CMYK, where the two differ, still goes through OpenCV."""
  from skimage import data as skdata  # pylint: disable=import-outside-toplevel
  photo = Image.fromarray(skdata.astronaut())
  kinds = [(f"s{sub}-q{q}-p{int(prog)}-{i}.jpg", photo.crop(box), "JPEG",
            {"quality": q, "subsampling": sub, "progressive": prog})
           for sub in (0, 1, 2) for q in (60, 95, 100) for prog in (False, True)
           for i, box in enumerate([(0, 0, 178, 218), (3, 5, 134, 186)])]
  kinds += [("gray.jpg", photo.convert("L"), "JPEG", {"quality": 90}),
            ("cmyk.jpg", photo.convert("CMYK"), "JPEG", {})]
  for name, image, fmt, kwargs in kinds:
    image.save(tmp_path / name, fmt, **kwargs)
    raw = (tmp_path / name).read_bytes()
    got = data.decode(str(tmp_path / name))
    assert got.dtype == np.uint8 and got.shape == (image.size[1], image.size[0], 3), name
    np.testing.assert_array_equal(got, _opencv_rgb(raw), err_msg=name)
  with Image.open(tmp_path / "cmyk.jpg") as cmyk:  # The case PIL would decode differently.
    assert not np.array_equal(np.asarray(cmyk.convert("RGB")),
                              data.decode(str(tmp_path / "cmyk.jpg")))


def test_uint8_loads_are_the_float_loads_pixels(tmp_path):
  """load_one / load_faces with as_uint8 give the pixels whose k / 255 the float loads return."""
  Image.fromarray(_gradient(218, 178)).save(tmp_path / "a.jpg", quality=90)
  for name in (str(tmp_path / "a.jpg"), "bundled:astronaut"):
    pixels = data.load_one(name, BOX, as_uint8=True)
    assert pixels.dtype == np.uint8 and pixels.shape == (64, 64, 3)
    np.testing.assert_array_equal(pixels.astype(np.float32) / 255.0, data.load_one(name, BOX))
    [(_, faces)] = data.load_faces(name, BOX, "off", as_uint8=True)
    np.testing.assert_array_equal(faces, pixels)
