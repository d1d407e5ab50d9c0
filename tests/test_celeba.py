"""CelebA readers on fake trees in the official formats, the Kaggle CSVs and tfds."""

import json
import os
import re
import shutil

import numpy as np
import pytest
from PIL import Image

import fake_celeba
from jaxvae import celeba

N = 12  # 7 train, 2 validation, 3 test
SPLITS = ("train", "validation", "test", "all")


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
  return fake_celeba.write_fake_celeba(str(tmp_path_factory.mktemp("official")), n=N,
                                       tfds_extras=True)


@pytest.fixture(scope="module")
def fake_csv(tmp_path_factory):
  return fake_celeba.write_fake_celeba(str(tmp_path_factory.mktemp("kaggle")), n=N, txt=False,
                                       csv=True)


@pytest.fixture(scope="module")
def tfds_dir(fake, tmp_path_factory):
  """celeb_a prepared by the stock tfds builder from `fake`, in array_record format."""
  pytest.importorskip("importlib_resources", reason="tfds needs it to prepare a dataset")
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  return data_dir, fake_celeba.prepare_tfds(fake, data_dir)


@pytest.fixture
def tree(fake, tmp_path):
  """A private copy of the official tree that a test may break."""
  root = str(tmp_path / "celeba")
  shutil.copytree(fake.root, root)
  return root


def _expected_images(fake, idx, box=celeba.DEFAULT_BOX, size=64):
  return np.stack([np.asarray(Image.fromarray(fake.pixels[fake.names[i]]).crop(box)
                              .resize((size, size), Image.BILINEAR), np.float32) / 255.0
                   for i in idx])


def test_fake_tree_is_in_the_official_format(fake):
  with open(os.path.join(fake.root, "list_attr_celeba.txt"), "rb") as f:
    lines = f.read().split(b"\r\n")
  assert lines[0] == str(N).encode() and lines[-1] == b""
  assert lines[1] == (" ".join(celeba.ATTR_NAMES) + " ").encode()
  # First value unpadded, the rest as " %2d".
  assert all(re.fullmatch(rb"\d{6}\.jpg -?1( -1|  1){39}", line) for line in lines[2:-1])
  with open(os.path.join(fake.root, "list_eval_partition.txt"), "rb") as f:
    assert f.read().startswith(b"000001.jpg 0\r\n000002.jpg 0\r\n")
  with Image.open(os.path.join(fake.root, "img_align_celeba", "000001.jpg")) as image:
    assert image.size == (178, 218) and image.format == "JPEG"


@pytest.mark.parametrize("split", SPLITS)
def test_official_csv_and_tfds_mock_yield_the_same_data(fake, fake_csv, split):
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  for name in fake.names:
    np.testing.assert_array_equal(fake.pixels[name], fake_csv.pixels[name])
  idx = fake.index(split)
  official = celeba.open_celeba(fake.root, split=split)
  kaggle = celeba.open_celeba(fake_csv.root, split=split)
  with tfds.testing.mock_data(as_data_source_fn=fake_celeba.mock_data_source_fn(fake)):
    mocked = celeba.open_celeba("tfds:celeb_a", split=split)
    mocked_images = mocked.load_batch(np.arange(len(mocked)))
  want = _expected_images(fake, idx)
  assert len(official) == len(kaggle) == len(mocked) == len(idx)
  assert list(official.names) == list(kaggle.names) == [fake.names[i] for i in idx]
  for data in (official, kaggle, mocked):
    np.testing.assert_array_equal(data.attributes, fake.attributes[idx])
    np.testing.assert_array_equal(data.splits, fake.splits[idx])
    assert data.attributes.dtype == np.int8 and data.attr_names == celeba.ATTR_NAMES
  np.testing.assert_array_equal(official.load_batch(np.arange(len(idx))), want)
  np.testing.assert_array_equal(kaggle.load_batch(np.arange(len(idx))), want)
  np.testing.assert_array_equal(mocked_images, want)
  assert "csv" in kaggle.source and "txt" in official.source


def _content(data):
  """Order-free content of a CelebA object: sorted (attributes, image bytes) pairs."""
  images = data.load_batch(np.arange(len(data)))
  return sorted((a.tobytes(), s, im.tobytes()) for a, s, im in
                zip(data.attributes, data.splits, images))


@pytest.mark.parametrize("split", SPLITS)
def test_prepared_array_record_tfds_matches_the_files(fake, tfds_dir, split):
  data_dir, version_dir = tfds_dir
  files = celeba.open_celeba(fake.root, split=split)
  by_data_dir = celeba.open_celeba(data_dir, split=split)
  by_version_dir = celeba.open_celeba(version_dir, split=split)
  by_name = celeba.open_celeba("tfds:celeb_a", split=split, tfds_data_dir=data_dir)
  assert "tensorflow-datasets" in by_data_dir.source
  want = _content(files)  # tfds shuffles examples and stores no file names: compare as sets
  for data in (by_data_dir, by_version_dir, by_name):
    assert len(data) == len(files)
    assert _content(data) == want
    assert data.names[0] == f"{'train' if split == 'all' else split}[0]"


def test_raw_records_parse_as_tfds_decodes_them(tfds_dir):
  """jaxvae parses celeb_a's serialized records itself (tfds' numpy parser costs ~1.4 ms per
  example): every example's attributes and image equal tfds' own decode of the same record."""
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  data_dir, _ = tfds_dir
  decoded = tfds.data_source("celeb_a", split="train", data_dir=data_dir, download=False,
                             try_gcs=False)
  data = celeba.open_celeba("tfds:celeb_a", split="train", tfds_data_dir=data_dir)
  assert len(data) == len(decoded) > 0
  for i in range(len(decoded)):
    want = decoded[i]
    assert list(data.attributes[i]) == [1 if want["attributes"][a] else -1
                                        for a in celeba.ATTR_NAMES]
    assert np.array_equal(np.asarray(data.raw_loader(i)), want["image"])


def test_max_count_box_and_size(fake):
  box = (0, 20, 178, 198)  # the Vanilla VAE's crop
  data = celeba.open_celeba(fake.root, split="train", max_count=3, box=box, size=32)
  assert list(data.names) == fake.names[:3]
  np.testing.assert_array_equal(data.load_batch([2, 0]), _expected_images(fake, [2, 0], box, 32))
  assert len(celeba.open_celeba(fake.root, split="train", max_count=0)) == 0
  assert len(celeba.open_celeba(fake.root, split="test", max_count=100)) == 3


def test_batches_cover_all_images_in_order(fake):
  data = celeba.open_celeba(fake.root, split="all", num_threads=2)
  for prefetch in (True, False):
    batches = list(data.batches(5, prefetch=prefetch))
    assert [len(b.indices) for b in batches] == [5, 5, 2]
    np.testing.assert_array_equal(np.concatenate([b.indices for b in batches]), np.arange(N))
    np.testing.assert_array_equal(np.concatenate([b.images for b in batches]),
                                  _expected_images(fake, range(N)))
  assert not list(data.batches(4, indices=[]))
  data.close()


def test_has_attribute(fake):
  data = celeba.open_celeba(fake.root, split="all")
  male = celeba.ATTR_NAMES.index("Male")
  np.testing.assert_array_equal(data.has("Male"), fake.attributes[:, male] == 1)
  np.testing.assert_array_equal(data.attributes_bool, fake.attributes == 1)
  with pytest.raises(ValueError, match="unknown CelebA attribute 'Man'"):
    data.has("Man")


@pytest.mark.parametrize("layout", ["drive", "kaggle_nested"])
def test_other_official_layouts(fake, tmp_path, layout):
  root = tmp_path / layout
  if layout == "drive":  # Google Drive folders: Img/, Anno/, Eval/
    shutil.copytree(os.path.join(fake.root, "img_align_celeba"), root / "Img" / "img_align_celeba")
    os.makedirs(root / "Anno")
    os.makedirs(root / "Eval")
    shutil.copy(os.path.join(fake.root, "list_attr_celeba.txt"), root / "Anno")
    shutil.copy(os.path.join(fake.root, "list_eval_partition.txt"), root / "Eval")
  else:  # the Kaggle zip unpacks to img_align_celeba/img_align_celeba/
    shutil.copytree(os.path.join(fake.root, "img_align_celeba"),
                    root / "img_align_celeba" / "img_align_celeba")
    for name in ("list_attr_celeba.txt", "list_eval_partition.txt"):
      shutil.copy(os.path.join(fake.root, name), root)
  data = celeba.open_celeba(str(root), split="test")
  np.testing.assert_array_equal(data.load_batch([0, 1, 2]),
                                _expected_images(fake, fake.index("test")))


def test_wrong_root(tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist"):
    celeba.open_celeba(str(tmp_path / "nope"))
  with pytest.raises(FileNotFoundError) as e:
    celeba.open_celeba(str(tmp_path))
  for expected in ("img_align_celeba", "list_eval_partition.txt", "list_attr_celeba.txt",
                   "never downloads"):
    assert expected in str(e.value)


def test_wrong_root_names_only_what_is_missing(tree):
  os.remove(os.path.join(tree, "list_attr_celeba.txt"))
  with pytest.raises(FileNotFoundError, match="missing list_attr_celeba.txt or .csv. Expected"):
    celeba.open_celeba(tree)


def _edit_line(path, number, edit):
  with open(path, newline="", encoding="utf-8") as f:
    lines = f.read().split("\r\n")
  lines[number - 1] = edit(lines[number - 1])
  with open(path, "w", newline="", encoding="utf-8") as f:
    f.write("\r\n".join(lines))


@pytest.mark.parametrize("line, edit, message", [
    (1, lambda s: "13", r":1: the count line says 13 images but the file has 12 rows"),
    (1, lambda s: "twelve", r":1: expected the image count"),
    (2, lambda s: s.replace("Male", "Man"), r":2: .*40 .*unknown: Man; missing: Male"),
    (2, lambda s: s.replace("Young ", ""), r":2: expected the 40 CelebA attribute names, got 39"),
    (5, lambda s: s[:-3], r":5: expected an image name and 40 values, got 39 values"),
    (7, lambda s: s[:-2] + " 0", r":7: attribute values must be -1 or 1; line is '000005.jpg"),
    (4, lambda s: s[:-2] + " x", r":4: attribute values must be -1 or 1"),
])
def test_malformed_attribute_file(tree, line, edit, message):
  _edit_line(os.path.join(tree, "list_attr_celeba.txt"), line, edit)
  with pytest.raises(ValueError, match="list_attr_celeba.txt" + message):
    celeba.open_celeba(tree)


@pytest.mark.parametrize("edit, message", [
    (lambda s: "000002.jpg 3", r"list_eval_partition.txt:2: the partition id must be 0, 1 or 2"),
    (lambda s: "000002.jpg", r"list_eval_partition.txt:2: expected an image name and a partition"),
    (lambda s: "000001.jpg 0", r"list_eval_partition.txt: duplicate image names: 000001.jpg"),
])
def test_malformed_partition_file(tree, edit, message):
  _edit_line(os.path.join(tree, "list_eval_partition.txt"), 2, edit)
  with pytest.raises(ValueError, match=message):
    celeba.open_celeba(tree)


def test_malformed_csv_headers(fake_csv, tmp_path):
  root = str(tmp_path / "kaggle")
  shutil.copytree(fake_csv.root, root)
  path = os.path.join(root, "list_attr_celeba.csv")
  with open(path, encoding="utf-8") as f:
    text = f.read()
  with open(path, "w", encoding="utf-8") as f:
    f.write(text.replace("image_id,", "name,", 1))
  with pytest.raises(ValueError, match=r"list_attr_celeba.csv:1: .*start with 'image_id'"):
    celeba.open_celeba(root)
  os.remove(os.path.join(root, "list_eval_partition.csv"))
  with open(os.path.join(root, "list_eval_partition.csv"), "w", encoding="utf-8") as f:
    f.write("000001.jpg,0\n")
  with pytest.raises(ValueError, match=r"list_eval_partition.csv:1: expected the header"):
    celeba.open_celeba(root)


def test_image_without_attributes(tree):
  path = os.path.join(tree, "list_attr_celeba.txt")
  with open(path, newline="", encoding="utf-8") as f:
    lines = f.read().split("\r\n")
  lines = ["11"] + lines[1:-2] + [""]  # drop 000012.jpg
  with open(path, "w", newline="", encoding="utf-8") as f:
    f.write("\r\n".join(lines))
  with pytest.raises(ValueError, match=r"has no attributes for 1 image\(s\).*000012.jpg"):
    celeba.open_celeba(tree, split="test")
  assert len(celeba.open_celeba(tree, split="train")) == 7


def test_missing_images_are_named(tree):
  for name in ("000010.jpg", "000012.jpg"):
    os.remove(os.path.join(tree, "img_align_celeba", name))
  with pytest.raises(FileNotFoundError, match=r"2 image\(s\) of the test split are missing .*"
                     r"000010.jpg, 000012.jpg"):
    celeba.open_celeba(tree, split="test")
  assert len(celeba.open_celeba(tree, split="train")) == 7
  data = celeba.open_celeba(tree, split="test", check_images=False)
  with pytest.raises(FileNotFoundError, match="000010.jpg is missing"):
    data.load_batch([0])


def test_wrong_image_size_and_corrupt_image(tree):
  Image.new("RGB", (64, 64)).save(os.path.join(tree, "img_align_celeba", "000001.jpg"))
  with open(os.path.join(tree, "img_align_celeba", "000002.jpg"), "wb") as f:
    f.write(b"not a jpeg")
  data = celeba.open_celeba(tree, split="train")
  with pytest.raises(ValueError, match=r"000001.jpg .* is 64x64, not the aligned CelebA 178x218"):
    data.load_batch([0])
  with pytest.raises(ValueError, match=r"000002.jpg is unreadable"):
    data.load_batch([1])


def test_bad_arguments(fake):
  with pytest.raises(ValueError, match="unknown CelebA split 'val'"):
    celeba.open_celeba(fake.root, split="val")
  with pytest.raises(ValueError, match="max_count"):
    celeba.open_celeba(fake.root, max_count=-1)
  data = celeba.open_celeba(fake.root, split="test")
  with pytest.raises(IndexError):
    data.load_batch([3])


def test_unprepared_tfds_is_a_clear_error_and_downloads_nothing(tmp_path):
  with pytest.raises(FileNotFoundError) as e:
    celeba.open_celeba("tfds:celeb_a", tfds_data_dir=str(tmp_path))
  for expected in ("no prepared celeb_a", "never downloads", "array_record", "official"):
    assert expected in str(e.value)
  assert not os.path.exists(tmp_path / "downloads")


def test_tfrecord_tfds_needs_tensorflow_message(tfds_dir, tmp_path):
  data_dir = str(tmp_path / "tfrecord")
  shutil.copytree(tfds_dir[0], data_dir)
  version_dir = os.path.join(data_dir, "celeb_a", "2.1.0")
  info_path = os.path.join(version_dir, "dataset_info.json")
  with open(info_path, encoding="utf-8") as f:
    info = json.load(f)
  info["fileFormat"] = "tfrecord"
  with open(info_path, "w", encoding="utf-8") as f:
    json.dump(info, f)
  for source in (data_dir, version_dir):
    with pytest.raises(ValueError) as e:
      celeba.open_celeba(source)
    for expected in ("tfrecord", "pip install tensorflow", "tfds convert_format",
                     "--out_file_format=array_record", "official"):
      assert expected in str(e.value)


def test_attribute_columns_in_another_order_are_reordered(fake_csv, tmp_path):
  root = str(tmp_path / "kaggle")
  shutil.copytree(fake_csv.root, root)
  perm = np.random.default_rng(0).permutation(len(celeba.ATTR_NAMES))
  with open(os.path.join(root, "list_attr_celeba.csv"), "w", encoding="utf-8") as f:
    f.write("image_id," + ",".join(celeba.ATTR_NAMES[p] for p in perm) + "\n")
    for name, row in zip(fake_csv.names, fake_csv.attributes):
      f.write(name + "," + ",".join(str(row[p]) for p in perm) + "\n")
  np.testing.assert_array_equal(celeba.open_celeba(root, split="all").attributes,
                                fake_csv.attributes)


def test_box_must_fit_the_aligned_image(fake):
  with pytest.raises(ValueError, match="inside the 178x218 aligned image"):
    celeba.open_celeba(fake.root, box=(0, 30, 178, 230))
