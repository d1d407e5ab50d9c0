"""The PVAE's Keras layers: weight names per layer kind, the creation-order table, config rules."""

from typing import NamedTuple

import numpy as np

from port import convert

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
