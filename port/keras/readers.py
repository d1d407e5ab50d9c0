"""Readers of Keras weight files: Keras 3 .weights.h5 and .keras, Keras 2 HDF5, TF SavedModel."""

import hashlib
import io
import json
import os
import re
import zipfile

import h5py
import numpy as np

from jaxvae import outputs
from port import sources
from port.keras.tables import (_TF_SKIPPED_EDGES, _TRAINING_STATE, EXPORT_HINT, KERAS3_CLASSES,
                               KERAS3_VARS, KerasLayer, KerasSource)

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
    return outputs.sha256_file(path)
  if os.path.isdir(path):
    root = path
    files = [os.path.join(d, n) for d, _, names in os.walk(path) for n in names]
  else:  # A TF checkpoint prefix: PREFIX.index, PREFIX.data-00000-of-00001, ...
    root = os.path.dirname(path) or "."
    files = [os.path.join(root, n) for n in os.listdir(root)
             if n.startswith(os.path.basename(path) + ".")]
  h = hashlib.sha256()
  for name in sorted(files):
    h.update(f"{os.path.relpath(name, root)}\0{outputs.sha256_file(name)}\n".encode())
  return h.hexdigest()
