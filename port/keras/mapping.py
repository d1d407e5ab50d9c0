"""Maps Keras layers onto the PVAE's flax variables by creation order, every shape checked."""

from itertools import zip_longest
from typing import Any

import numpy as np

from jaxvae import checkpoint, models
from port import convert
from port.keras.tables import (CONFIG_RULES, CONV_STRIDES, DECODER_DENSE_UNITS, KIND_NAMES,
                               PVAE_TABLE, WEIGHTS, KerasLayer, KerasSource, Mapped)

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
