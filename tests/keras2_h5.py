"""Writes a Keras model's weights in the tf.keras 2.x HDF5 layout, which Keras 3 cannot write.

Keras 3 still writes model.save("x.h5"), but with Keras 3 weight names ('conv2d/kernel'); Keras 2
names weights 'conv2d_8/kernel:0'. This mirrors tf.keras 2.x hdf5_format.save_weights_to_hdf5_group
(checked against files written by tf.keras 2.15): attrs layer_names / backend / keras_version on
the weights group (the file root for save_weights, model_weights/ for model.save), one group per
layer, created in sorted name order, each with attr weight_names listing the layer's trainable then
non-trainable weights, and the datasets under those names (nested models: one group holding all
of their sub-layers' weights). Attributes above 64512 bytes are split into name0, name1, ...
"""

import json

import h5py
import numpy as np

HDF5_OBJECT_HEADER_LIMIT = 64512


def _save_attributes(group, name: str, data: list[bytes], limit: int) -> None:
  """hdf5_format.save_attributes_to_hdf5_group: chunked when the array exceeds `limit` bytes."""
  data_npy = np.asarray(data)
  num_chunks = 1
  chunked = np.array_split(data_npy, num_chunks)
  while any(x.nbytes > limit for x in chunked):
    num_chunks += 1
    chunked = np.array_split(data_npy, num_chunks)
  if num_chunks > 1:
    for chunk_id, chunk in enumerate(chunked):
      group.attrs[f"{name}{chunk_id}"] = chunk
  else:
    group.attrs[name] = data


def _legacy_weights(layer) -> list[tuple[str, np.ndarray]]:
  """(Keras 2 weight name, value): trainable weights first, as Keras 2's _legacy_weights."""
  sub_layers = getattr(layer, "layers", None) or [layer]
  trainable = [(l, w) for l in sub_layers for w in l.trainable_weights]
  non_trainable = [(l, w) for l in sub_layers for w in l.non_trainable_weights]
  return [(f"{l.name}/{w.name}:0", np.asarray(w.numpy() if hasattr(w, "numpy") else w))
          for l, w in trainable + non_trainable]


def _write_weights_group(group, layers, limit: int) -> None:
  _save_attributes(group, "layer_names", [l.name.encode("utf8") for l in layers], limit)
  group.attrs["backend"] = b"tensorflow"
  group.attrs["keras_version"] = b"2.6.0"
  for layer in sorted(layers, key=lambda l: l.name):
    layer_group = group.create_group(layer.name)
    weights = _legacy_weights(layer)
    _save_attributes(layer_group, "weight_names", [n.encode("utf8") for n, _ in weights], limit)
    for name, value in weights:
      layer_group.create_dataset(name, value.shape, dtype=value.dtype)[...] = value


def save_weights(path: str, model, limit: int = HDF5_OBJECT_HEADER_LIMIT) -> str:
  """Keras 2 `model.save_weights("x.h5")`: the weights group is the file root."""
  with h5py.File(path, "w") as f:
    _write_weights_group(f, model.layers, limit)
  return path


def model_save(path: str, model, limit: int = HDF5_OBJECT_HEADER_LIMIT) -> str:
  """Keras 2 `model.save("x.h5")` of a functional model: model_config, model_weights/, optimizer."""
  with h5py.File(path, "w") as f:
    f.attrs["keras_version"] = b"2.6.0"
    f.attrs["backend"] = b"tensorflow"
    config = {"class_name": "Functional", "config": model.get_config()}
    f.attrs["model_config"] = json.dumps(config).encode("utf8")
    f.attrs["training_config"] = json.dumps({"loss": None, "metrics": None}).encode("utf8")
    _write_weights_group(f.create_group("model_weights"), model.layers, limit)
    optimizer = f.create_group("optimizer_weights")  # Adam state that the port must ignore.
    _save_attributes(optimizer, "weight_names", [b"Adam/iter:0"], limit)
    optimizer.create_dataset("Adam/iter:0", data=np.int64(7))
  return path
