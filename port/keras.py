"""Reads Keras PVAE weights (Keras 3/2 HDF5, .keras, TF SavedModel) into flax variables."""

import hashlib
import io
import json
import os
import re
import zipfile
from itertools import zip_longest
from typing import Any, Callable, NamedTuple

import h5py
import numpy as np

from jaxvae import checkpoint, models
from port import convert, sources

KERAS_MODELS = ("pvae",)

# Keras weight name -> (flax collection, flax leaf), per layer kind. Keras kernels are HWIO
# (Conv2D) and [in, out] (Dense), as flax's; the flax BatchNorm uses Keras' eps 1e-3.
WEIGHTS = {
    "conv": (("kernel", "params", "kernel"), ("bias", "params", "bias")),
    "dense": (("kernel", "params", "kernel"), ("bias", "params", "bias")),
    "bn": (("gamma", "params", "scale"), ("beta", "params", "bias"),
           ("moving_mean", "batch_stats", "mean"), ("moving_variance", "batch_stats", "var")),
}
KIND_NAMES = {"conv": "Conv2D", "dense": "Dense", "bn": "BatchNormalization"}
# Keras 3 stores a layer's variables as vars/0, vars/1, ... in this order.
KERAS3_VARS = {"conv": ("kernel", "bias"), "dense": ("kernel", "bias"),
               "bn": ("gamma", "beta", "moving_mean", "moving_variance")}
KERAS3_CLASSES = {"conv2d": "conv", "dense": "dense", "batch_normalization": "bn"}

# The PVAE's weight layers in the order the notebook creates them: (kind, flax module).
# Layers of one kind are matched to these slots in order; every shape is then checked.
PVAE_TABLE = (
    ("conv", "encoder_0/conv"), ("bn", "encoder_0/bn"),
    ("conv", "encoder_1/conv"), ("bn", "encoder_1/bn"),
    ("conv", "encoder_2/conv"), ("bn", "encoder_2/bn"),
    ("conv", "encoder_3/conv"), ("bn", "encoder_3/bn"),
    ("dense", "z_mean"), ("dense", "z_log_var"),
    ("dense", "decoder_dense"),
    ("conv", "decoder_0/conv"), ("bn", "decoder_0/bn"),
    ("conv", "decoder_1/conv"), ("bn", "decoder_1/bn"),
    ("conv", "decoder_2/conv"), ("bn", "decoder_2/bn"),
    ("conv", "decoder_out"),
)

# The notebook's layer hyperparameters, which the flax module hard-codes: checked against the
# file's architecture config where it has one. Keras class -> {config key: accepted values}.
CONFIG_RULES = {
    "Conv2D": {"padding": ("same",), "activation": ("linear",), "dilation_rate": ([1, 1], 1),
               "data_format": ("channels_last", None), "use_bias": (True,), "groups": (1,)},
    "BatchNormalization": {"epsilon": (1e-3,), "center": (True,), "scale": (True,),
                           "axis": (-1, 3, [-1], [3])},
    "LeakyReLU": {"negative_slope": (0.3,), "alpha": (0.3,)},  # Keras 3 / Keras 2 names.
    "UpSampling2D": {"interpolation": ("nearest",), "size": ([2, 2], 2),
                     "data_format": ("channels_last", None)},
    "Dense": {"use_bias": (True,)},
    "Flatten": {"data_format": ("channels_last", None)},
    "Rescaling": {"scale": (1 / 255,), "offset": (0.0,)},
}
CONV_STRIDES = {(4, 4): [2, 2], (3, 3): [1, 1]}  # Encoder k4 s2, decoder k3 s1.
DECODER_DENSE_UNITS = 4 * 4 * 256  # The one Dense with relu; the latent heads are linear.

# Top-level entries of a weights file that hold training state, not model weights.
_TRAINING_STATE = ("optimizer", "optimizer_weights", "metrics", "top_level_model_weights")
# Object-graph edges of a TF checkpoint that alias variables held elsewhere, or training state.
_TF_SKIPPED_EDGES = {"variables", "trainable_variables", "non_trainable_variables", "_variables",
                     "keras_api", "optimizer", "save_counter", "signatures",
                     "_self_saveable_object_factories"}

EXPORT_HINT = ('in the original environment, export the weights with '
               '`model.save_weights("pvae.weights.h5")` (Keras 3, or Keras 2 with '
               '`model.save_weights("pvae.h5")`) and pass that file as --source')


class KerasLayer(NamedTuple):
  path: str  # Where the layer is in the file, e.g. "encoder/layers/conv2d_1".
  name: str  # The Keras layer name where the file records it (conv2d_5), else the path's last part.
  kind: str  # "conv", "dense", "bn", or "unknown".
  weights: dict[str, np.ndarray]  # Keras weight name (kernel, gamma, ...) -> array.
  order: tuple  # Sort key: sub-model (encoder before decoder), then creation order.


class KerasSource(NamedTuple):
  fmt: str  # What the file is, in words.
  layers: list[KerasLayer]
  ignored: list[str]  # Training state the file carries besides the weights (optimizer, metrics).
  config: dict | None = None  # The architecture (model.save, .keras), when the file has it.


class Mapped(NamedTuple):
  converted: convert.Converted
  mapping: list[str]  # One line per Keras layer: "path (name) Kind shapes -> flax module".
  config_note: str  # What was checked of the file's architecture config, if anything.


def _suffix(name: str) -> int:
  """Keras' creation counter in a name: conv2d -> 0, conv2d_7 -> 7, layer_with_weights-3 -> 3."""
  m = re.search(r"[_-](\d+)$", name)
  return int(m.group(1)) if m else 0


def _rank(name: str) -> int:
  """Sub-models in architecture order: an encoder before anything else, a decoder after."""
  lower = name.lower()
  return 0 if "enc" in lower else 2 if "dec" in lower else 1


def _key(name: str, index: int | None = None) -> tuple:
  """One path component's sort key; `index` is the order the file records, if any."""
  return (_rank(name), _suffix(name) if index is None else index, name)


def _text(value) -> str:
  return value.decode("utf8") if isinstance(value, bytes) else str(value)


def _attr_list(group, name: str) -> list[str]:
  """A Keras 2 string-list attribute, also when Keras split it into name0, name1, ... chunks."""
  if name in group.attrs:
    values = list(np.atleast_1d(group.attrs[name]))
  else:
    values, i = [], 0
    while f"{name}{i}" in group.attrs:
      values += list(np.atleast_1d(group.attrs[f"{name}{i}"]))
      i += 1
  return [_text(v) for v in values]


def _classify(weights: dict[str, np.ndarray]) -> str:
  """The layer kind from its Keras weight names and shapes."""
  names = set(weights)
  if names == {"kernel", "bias"} and weights["kernel"].ndim in (2, 4):
    return "conv" if weights["kernel"].ndim == 4 else "dense"
  if names == set(KERAS3_VARS["bn"]):
    return "bn"
  return "unknown"


def _is_training_state(weights: dict[str, np.ndarray]) -> bool:
  """Metric accumulators (total, count) and other scalars: not model weights."""
  return all(np.ndim(v) == 0 for v in weights.values())


def _add(layers: list, ignored: list, path: str, name: str, weights: dict, order: tuple) -> None:
  # Only sub-models rank by name (encoder, decoder); a layer's own place is its recorded order.
  order = order[:-1] + ((1, *order[-1][1:]),)
  if _is_training_state(weights):
    ignored.append(f"{path} (scalars {', '.join(weights)})")
  else:
    layers.append(KerasLayer(path, name, _classify(weights), weights, order))


def _read_keras3(root) -> tuple[list[KerasLayer], list[str]]:
  """Keras 3 weights (.weights.h5, model.weights.h5 in .keras): <object>/vars/0.. per layer."""
  layers, ignored = [], []

  def walk(group, path: str, order: tuple) -> None:
    for key in group:
      child = group[key]
      if key == "vars" or not hasattr(child, "keys"):
        continue
      child_path = f"{path}/{key}" if path else key
      if not path and key in _TRAINING_STATE:
        ignored.append(f"{child_path} (training state)")
        continue
      variables = child.get("vars")
      named = variables is not None and "name" in variables.attrs
      display = _text(variables.attrs["name"]) if named else key
      # A sub-model's own name (encoder, decoder) ranks it; the key's counter orders the rest.
      child_order = order if key == "layers" else order + ((_rank(display), _suffix(key), key),)
      if variables is not None and len(variables):
        arrays = [np.asarray(variables[str(i)]) for i in range(len(variables))]
        kind = KERAS3_CLASSES.get(re.sub(r"_\d+$", "", key))
        names = KERAS3_VARS.get(kind) if kind else _guess_keras3_names(arrays)
        weights = (dict(zip(names, arrays)) if names and len(names) == len(arrays)
                   else {str(i): a for i, a in enumerate(arrays)})
        _add(layers, ignored, child_path, display, weights, child_order)
      walk(child, child_path, child_order)

  walk(root, "", ())
  return layers, ignored


def _guess_keras3_names(arrays: list[np.ndarray]) -> tuple[str, ...] | None:
  """Variable names of a layer whose class the file does not name, from its shapes."""
  if len(arrays) == 2 and arrays[0].ndim in (2, 4) and arrays[1].ndim == 1:
    return KERAS3_VARS["conv"]
  if len(arrays) == 4 and all(a.ndim == 1 and a.shape == arrays[0].shape for a in arrays):
    return KERAS3_VARS["bn"]
  return None


def _read_keras2(group) -> tuple[list[KerasLayer], list[str]]:
  """Keras 2 HDF5 (save_weights at the root, model.save under model_weights/): attrs
  layer_names, and per layer attrs weight_names such as 'conv2d_3/kernel:0'."""
  layers, ignored = [], []
  for i, layer_name in enumerate(_attr_list(group, "layer_names")):
    if layer_name not in group:
      raise sources.SourceError(f"layer {layer_name!r} is listed in layer_names but absent")
    layer_group = group[layer_name]
    by_prefix: dict[str, dict[str, np.ndarray]] = {}
    for weight_name in _attr_list(layer_group, "weight_names"):
      *prefix, leaf = weight_name.split("/")
      by_prefix.setdefault("/".join(prefix), {})[leaf.split(":")[0]] = np.asarray(
          layer_group[weight_name])
    for j, (prefix, weights) in enumerate(by_prefix.items()):
      if prefix in ("", layer_name):  # A layer of the model itself.
        _add(layers, ignored, layer_name, layer_name, weights, (_key(layer_name, i),))
      else:  # A layer of a nested model (encoder, decoder), in order of first appearance.
        own = prefix.split("/")[-1]
        _add(layers, ignored, f"{layer_name}/{prefix}", own, weights,
             (_key(layer_name, i), _key(own, j)))
  return layers, ignored


def _read_h5(fileobj, label: str) -> KerasSource:
  try:
    f = h5py.File(fileobj, "r")
  except OSError as e:
    raise sources.SourceError(f"{label} is not a readable HDF5 file: {e}") from e
  config = None
  with f:
    version = _text(f.attrs.get("keras_version", b"?"))
    try:
      if "model_weights" in f:
        layers, ignored = _read_keras2(f["model_weights"])
        fmt = f"Keras {version} HDF5 from model.save"
        ignored += [f"{k} (training state)" for k in f if k != "model_weights"]
        if "model_config" in f.attrs:
          config = json.loads(_text(f.attrs["model_config"]))
      elif _attr_list(f, "layer_names"):
        layers, ignored = _read_keras2(f)
        fmt = f"Keras {version} HDF5 from save_weights"
      elif "vars" in f or "layers" in f or any("vars" in f[k] for k in f if hasattr(f[k], "keys")):
        layers, ignored = _read_keras3(f)
        fmt = "Keras 3 weights (.weights.h5 layout)"
      else:
        raise sources.SourceError(
            f"{label} is an HDF5 file but not Keras weights: it has neither layer_names "
            "(Keras 2) nor layers/<name>/vars (Keras 3)")
    except (KeyError, json.JSONDecodeError) as e:
      raise sources.SourceError(f"{label} is a malformed Keras weights file: {e}") from e
  return KerasSource(fmt, layers, ignored, config)


def _read_archive(path: str) -> KerasSource:
  """A .keras zip: config.json, metadata.json and model.weights.h5."""
  try:
    with zipfile.ZipFile(path) as z:
      names = z.namelist()
      if "model.weights.h5" not in names:
        raise sources.SourceError(f"{path} is a zip archive without model.weights.h5 "
                                  f"(it holds {', '.join(names[:8])}); not a .keras model")
      weights = z.read("model.weights.h5")
      meta = json.loads(z.read("metadata.json")) if "metadata.json" in names else {}
      config = json.loads(z.read("config.json")) if "config.json" in names else {}
  except (zipfile.BadZipFile, json.JSONDecodeError) as e:
    raise sources.SourceError(f"{path} is not a readable .keras archive: {e}") from e
  source = _read_h5(io.BytesIO(weights), f"{path}:model.weights.h5")
  model = f"{config.get('class_name', '?')} {config.get('config', {}).get('name', '')!r}".strip()
  fmt = f"Keras {meta.get('keras_version', '?')} .keras archive of {model}"
  return source._replace(fmt=fmt, config=config or None)


def tf_prefix(path: str) -> str | None:
  """The checkpoint prefix of a SavedModel directory or TF checkpoint, else None."""
  if os.path.isdir(path):
    if os.path.exists(os.path.join(path, "saved_model.pb")):
      return os.path.join(path, "variables", "variables")
    index = sorted(n for n in os.listdir(path) if n.endswith(".index"))
    if os.path.exists(os.path.join(path, "checkpoint")) or index:
      return os.path.join(path, index[-1][:-len(".index")]) if index else path
    return None
  if path.endswith(".index") and os.path.exists(path):
    return path[:-len(".index")]
  if os.path.exists(path + ".index"):
    return path
  return None


def _read_tf(path: str, prefix: str) -> KerasSource:
  """A TensorFlow SavedModel or checkpoint, through TensorFlow's checkpoint reader."""
  kind = "SavedModel" if os.path.exists(os.path.join(path, "saved_model.pb")) else "checkpoint"
  try:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise sources.SourceError(
        f"{path} is a TensorFlow {kind}; reading it needs TensorFlow, which is not installed "
        f"(pip install tensorflow). Without TensorFlow, {EXPORT_HINT}.") from e
  # pylint: disable-next=import-outside-toplevel
  from tensorflow.core.protobuf import trackable_object_graph_pb2

  if os.path.isdir(path) and kind == "checkpoint":
    prefix = tf.train.latest_checkpoint(path) or prefix
  try:
    reader = tf.train.load_checkpoint(prefix)
  except (tf.errors.OpError, ValueError) as e:
    raise sources.SourceError(f"cannot read the TensorFlow {kind} {path}: {e}") from e
  layers, ignored = [], []
  keys = reader.get_variable_to_shape_map()
  if "_CHECKPOINTABLE_OBJECT_GRAPH" in keys:  # Object-based (TF2): walk the object graph.
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    paths, queue = {0: ()}, [0]
    while queue:  # Breadth first: each object's shortest path through named attributes.
      node = queue.pop(0)
      for child in graph.nodes[node].children:
        if child.local_name not in _TF_SKIPPED_EDGES and child.node_id not in paths:
          paths[child.node_id] = paths[node] + (child.local_name,)
          queue.append(child.node_id)
    variables = {}
    for node_id, node in enumerate(graph.nodes):
      for attr in node.attributes:
        if attr.name == "VARIABLE_VALUE" and node_id in paths and len(paths[node_id]) >= 2:
          variables[paths[node_id]] = (reader.get_tensor(attr.checkpoint_key), attr.full_name)
  else:  # Name-based (TF1 style): "conv2d_3/kernel".
    variables = {tuple(k.split("/")): (reader.get_tensor(k), k) for k in keys
                 if not k.startswith(("optimizer", "training/", "Adam", "global_step"))}
  by_layer: dict[tuple, dict[str, np.ndarray]] = {}
  names: dict[tuple, str] = {}
  for var_path, (value, full_name) in sorted(variables.items()):
    by_layer.setdefault(var_path[:-1], {})[var_path[-1].split(":")[0]] = np.asarray(value)
    names[var_path[:-1]] = full_name.split("/")[-2] if "/" in full_name else var_path[-2]
  for layer_path, weights in by_layer.items():
    order = tuple(_key(p) for p in layer_path if p != "layers")
    _add(layers, ignored, "/".join(layer_path), names[layer_path], weights, order)
  return KerasSource(f"TensorFlow {kind} (TF {tf.__version__})", layers, ignored)


def read(path: str) -> KerasSource:
  """The weight layers of a Keras file or TF directory, by format (sniffed, not by extension)."""
  prefix = tf_prefix(path)
  if prefix is not None:
    return _read_tf(path, prefix)
  if os.path.isdir(path):
    raise sources.SourceError(
        f"{path} is a directory but neither a TensorFlow SavedModel (saved_model.pb) nor a TF "
        "checkpoint (checkpoint, *.index); pass a .weights.h5, .keras or .h5 file")
  with open(path, "rb") as f:
    head = f.read(8)
  if head == b"\x89HDF\r\n\x1a\n":
    return _read_h5(path, path)
  if head.startswith(b"PK\x03\x04"):
    return _read_archive(path)
  raise sources.SourceError(
      f"{path} is not Keras weights: neither HDF5 (.weights.h5, Keras 2 .h5) nor a .keras "
      "archive nor a TensorFlow SavedModel/checkpoint")


def resolve(source: str) -> str:
  """A local file or directory for `source` (a path, or an http(s)/file URL of a file)."""
  if os.path.isdir(source):
    return source
  if tf_prefix(source) is not None:  # A TF checkpoint prefix: path.index and path.data-*.
    return source
  path, _ = sources.resolve(source)
  return path


def sha256_of(path: str) -> str:
  """sha256 of a file; of a directory or TF checkpoint prefix, over its files' names and hashes."""
  if os.path.isfile(path):
    return sources.sha256_of(path)
  if os.path.isdir(path):
    root = path
    files = [os.path.join(d, n) for d, _, names in os.walk(path) for n in names]
  else:  # A TF checkpoint prefix: PREFIX.index, PREFIX.data-00000-of-00001, ...
    root = os.path.dirname(path) or "."
    files = [os.path.join(root, n) for n in os.listdir(root)
             if n.startswith(os.path.basename(path) + ".")]
  h = hashlib.sha256()
  for name in sorted(files):
    h.update(f"{os.path.relpath(name, root)}\0{sources.sha256_of(name)}\n".encode())
  return h.hexdigest()


def _shapes(weights: dict[str, np.ndarray]) -> str:
  shapes = {tuple(np.shape(v)) for v in weights.values()}
  if len(weights) > 2 and len(shapes) == 1:  # BatchNorm: four vectors of one length.
    return f"{'/'.join(weights)} {shapes.pop()}"
  return ", ".join(f"{k} {tuple(np.shape(v))}" for k, v in weights.items())


def _label(layer: KerasLayer) -> str:
  return layer.path if layer.name == layer.path.split("/")[-1] else f"{layer.path} ({layer.name})"


def _same(value, accepted) -> bool:
  if isinstance(value, (int, float)) and isinstance(accepted, (int, float)):
    return bool(np.isclose(value, accepted, rtol=1e-6, atol=0.0))
  if isinstance(value, (list, tuple)) and isinstance(accepted, (list, tuple)):
    return list(value) == list(accepted)
  return value == accepted


def _layer_configs(node) -> list[tuple[str, dict]]:
  """(Keras class, layer config) of every layer in a serialized model config, depth first."""
  found = []
  if isinstance(node, dict):
    if node.get("class_name") in CONFIG_RULES and isinstance(node.get("config"), dict):
      found.append((node["class_name"], node["config"]))
    for value in node.values():
      found += _layer_configs(value)
  elif isinstance(node, list):
    for value in node:
      found += _layer_configs(value)
  return found


def config_problems(config: dict | None) -> tuple[list[str], str]:
  """Hyperparameters in the file's architecture config that differ from the notebook's."""
  layers = _layer_configs(config) if config else []
  if not layers:
    return [], ("the file has no architecture config: padding, strides, BatchNorm eps, LeakyReLU "
                "slope and activations are taken to be the notebook's")
  problems = []
  for cls, cfg in layers:
    name = cfg.get("name", "?")
    for key, accepted in CONFIG_RULES[cls].items():
      if key in cfg and not any(_same(cfg[key], a) for a in accepted):
        problems.append(f"config: {cls} {name} has {key}={cfg[key]!r}; the port assumes "
                        f"{accepted[0]!r}")
    if cls == "Conv2D" and "kernel_size" in cfg and "strides" in cfg:
      want = CONV_STRIDES.get(tuple(np.atleast_1d(cfg["kernel_size"]).tolist() * 2)[:2])
      if want is not None and not _same(list(np.atleast_1d(cfg["strides"]).tolist() * 2)[:2], want):
        problems.append(f"config: Conv2D {name} has strides={cfg['strides']!r} with kernel "
                        f"{cfg['kernel_size']!r}; the port assumes {want!r}")
    if cls == "Dense" and "activation" in cfg and "units" in cfg:
      want = "relu" if cfg["units"] == DECODER_DENSE_UNITS else "linear"
      if cfg["activation"] != want:
        problems.append(f"config: Dense {name} ({cfg['units']} units) has activation="
                        f"{cfg['activation']!r}; the port assumes {want!r}")
  return problems, (f"architecture config checked: {len(layers)} layers (padding, strides, "
                    "BatchNorm eps, LeakyReLU slope, activations, upsampling, rescaling)")


def _align(want: list[tuple], have: list[tuple]) -> list[tuple[int | None, int | None]]:
  """Order-preserving pairing of slots with layers: the most equal-shaped pairs (an LCS), then
  the leftovers between them paired by position; (i, None) is missing, (None, j) is extra."""
  n, m = len(want), len(have)
  best = [[0] * (m + 1) for _ in range(n + 1)]
  for i in range(n - 1, -1, -1):
    for j in range(m - 1, -1, -1):
      best[i][j] = (best[i + 1][j + 1] + 1 if want[i] == have[j]
                    else max(best[i + 1][j], best[i][j + 1]))
  pairs, gap_i, gap_j, i, j = [], [], [], 0, 0

  def flush():
    pairs.extend(zip_longest(gap_i, gap_j))
    gap_i.clear()
    gap_j.clear()

  while i < n or j < m:
    if i < n and j < m and want[i] == have[j] and best[i][j] == best[i + 1][j + 1] + 1:
      flush()
      pairs.append((i, j))
      i, j = i + 1, j + 1
    elif j >= m or (i < n and best[i + 1][j] >= best[i][j + 1]):
      gap_i.append(i)
      i += 1
    else:
      gap_j.append(j)
      j += 1
  flush()
  return pairs


def convert_pvae(source: KerasSource, **model_fields: Any) -> Mapped:
  """Maps the file's layers onto PVAE by the architecture's layer order and shapes.

  Layers of each kind (Conv2D, BatchNormalization, Dense) are taken in the file's order
  (encoder before decoder, then creation order) and matched in that order to PVAE_TABLE's
  slots of the kind; every weight's shape must equal the flax variable's. Missing, extra and
  mis-shaped layers are all reported by name in one PortError.
  """
  denses = sorted((l for l in source.layers if l.kind == "dense"), key=lambda l: l.order)
  if not denses:
    raise convert.PortError(f"cannot read the latent size: the {source.fmt} holds no Dense layer "
                            "(is this the PVAE?)")
  latent = int(denses[0].weights["kernel"].shape[1])
  model = models.build("pvae", **{"latent_dim": latent, **model_fields})
  expected = checkpoint.flatten(models.abstract_variables(model))

  problems, config_note = config_problems(source.config)
  flat, mapping = {}, {}
  problems += [f"unexpected: {_label(l)} with weights {_shapes(l.weights)} (not a Conv2D, "
               "Dense or BatchNormalization layer)" for l in source.layers if l.kind == "unknown"]
  for kind in ("conv", "bn", "dense"):
    found = sorted((l for l in source.layers if l.kind == kind), key=lambda l: l.order)
    slots = [module for k, module in PVAE_TABLE if k == kind]
    want = [tuple(tuple(expected[f"{coll}/{slot}/{fw}"].shape) for _, coll, fw in WEIGHTS[kind])
            for slot in slots]
    have = [tuple(tuple(np.shape(l.weights[kw])) for kw, _, _ in WEIGHTS[kind]) for l in found]
    for i, j in _align(want, have):
      if j is None:
        shapes = ", ".join(f"{kw} {shape}" for (kw, _, _), shape in zip(WEIGHTS[kind], want[i]))
        problems.append(f"missing: {KIND_NAMES[kind]} layer #{i + 1} of {len(slots)} for "
                        f"{slots[i]} (expected {shapes}); the file has {len(found)}")
        continue
      layer = found[j]
      if i is None:
        problems.append(f"unexpected: {KIND_NAMES[kind]} {_label(layer)} {_shapes(layer.weights)}"
                        f" (the PVAE has {len(slots)} {KIND_NAMES[kind]} layers)")
        continue
      slot = slots[i]
      mapping[slot] = (_label(layer), KIND_NAMES[kind], _shapes(layer.weights))
      for keras_name, collection, flax_name in WEIGHTS[kind]:
        flax_path = f"{collection}/{slot}/{flax_name}"
        value = np.asarray(layer.weights[keras_name], np.float32)
        if value.shape != tuple(expected[flax_path].shape):
          problems.append(f"shape mismatch: {_label(layer)} {keras_name} {value.shape} -> "
                          f"{flax_path}, expected {tuple(expected[flax_path].shape)}")
        flat[flax_path] = value
  rows = [(*mapping[module], module) for _, module in PVAE_TABLE if module in mapping]
  widths = [max((len(row[c]) for row in rows), default=0) for c in range(3)]
  lines = [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:<{widths[2]}}  -> {m}" for a, b, c, m in rows]
  if problems:
    raise convert.PortError(
        f"the {source.fmt} does not match 'pvae' ({len(problems)} problem(s)):\n  "
        + "\n  ".join(problems) + "\nmapping by layer order, as far as it went:\n  "
        + "\n  ".join(lines))
  converted = convert.Converted(model, convert.unflatten(flat), source.ignored)
  return Mapped(converted, lines, config_note)


def keras_load_agreement(path: str, variables, latent_dim: int,
                         log: Callable[[str], None] = lambda s: None) -> float | None:
  """Loads `path` with Keras' own load_weights into the reference PVAE and compares each layer
  with the port's arrays: the max abs difference over the layers Keras loaded (0.0 when they
  agree), or None when Keras cannot read the file (a TF SavedModel, another architecture)."""
  import warnings  # pylint: disable=import-outside-toplevel

  from port import keras_ref  # pylint: disable=import-outside-toplevel

  native = keras_ref.build_pvae(latent_dim)
  initial = {m: l.get_weights() for m, l in keras_ref.slot_layers(native).items()}
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")
      native.load_weights(path)
  except Exception as e:  # pylint: disable=broad-except  # Keras raises many kinds.
    log(f"keras load_weights cannot read {path} into the reference PVAE "
        f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
        "the mapping above is what the port used")
    return None
  mapped = keras_ref.build_pvae(latent_dim)
  keras_ref.set_flax_variables(mapped, variables)
  mapped_layers = keras_ref.slot_layers(mapped)
  worst, agree, skipped, conflicts = 0.0, [], [], []
  for module, layer in keras_ref.slot_layers(native).items():
    got, want = layer.get_weights(), mapped_layers[module].get_weights()
    if all(np.array_equal(a, b) for a, b in zip(got, want)):
      agree.append(module)
    elif all(np.array_equal(a, b) for a, b in zip(got, initial[module])):
      skipped.append(module)
    else:
      conflicts.append(module)
      worst = max([worst] + [float(np.abs(a - b).max()) for a, b in zip(got, want)])
  log(f"keras load_weights agrees with the mapping on {len(agree)}/{len(PVAE_TABLE)} layers"
      + (f"; keras left {', '.join(skipped)} unloaded" if skipped else "")
      + (f"; CONFLICTS on {', '.join(conflicts)}" if conflicts else ""))
  return worst


def max_abs_diffs(model, variables, source_path: str | None = None, batch: int = 8,
                  seed: int = 0, log: Callable[[str], None] = lambda s: None) -> dict[str, float]:
  """{'mean', 'logvar', 'recon'[, 'weights']}: max |Keras - JAX| on random uint8 images, one eps.

  The Keras original (port.keras_ref, Keras 3) runs with the ported arrays in its own layers;
  recon is compared on the [0, 1] scale (the original's 0-255 output / 255), and 'recon_255' is
  the same difference on the 0-255 scale, for the record. With `source_path` that Keras can load
  itself, 'weights' is the max abs difference between Keras' own loading and the port's mapping.
  """
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

  from port import keras_ref  # pylint: disable=import-outside-toplevel

  keras = keras_ref.keras_module()
  log(f"keras {keras.__version__} ({keras.backend.backend()} backend) vs jax on {batch} random "
      f"uint8 images, one shared eps of std {keras_ref.EPS_STD}")
  reference = keras_ref.build_pvae(model.latent_dim)
  keras_ref.set_flax_variables(reference, variables)
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, (batch, *models.IMAGE_SHAPE)).astype(np.uint8)
  eps = (keras_ref.EPS_STD * rng.standard_normal((1, model.latent_dim))).astype(np.float32)
  ref = keras_ref.forward(reference, images, eps)
  x = np.asarray(models.to_model_range(ref.x01, model.input_range), np.float32)
  with jax.default_matmul_precision("highest"):
    out = jax.jit(model.apply)(variables, jnp.asarray(x),
                               jnp.broadcast_to(jnp.asarray(eps), (batch, model.latent_dim)))
  lo, hi = model.output_range  # The original's (0, 255) unless overridden.
  recon01 = (np.asarray(out.recon, np.float64) - lo) / (hi - lo)
  diffs = {
      "mean": float(np.abs(np.asarray(out.mean) - ref.mean).max()),
      "logvar": float(np.abs(np.asarray(out.logvar) - ref.logvar).max()),
      "recon": float(np.abs(recon01 - ref.recon.astype(np.float64) / 255.0).max()),
      "recon_255": float(np.abs(np.asarray(out.recon) - ref.recon).max()),
  }
  if source_path is not None and os.path.isfile(source_path):
    agreement = keras_load_agreement(source_path, variables, model.latent_dim, log)
    if agreement is not None:
      diffs["weights"] = agreement
  return diffs
