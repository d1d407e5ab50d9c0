"""The Kaggle notebook's PVAE (arnrob), rebuilt in Keras 3 for parity tests and --verify."""

import os
import sys
from typing import NamedTuple

import numpy as np

EPS_STD = 0.1  # The notebook's sampling: eps ~ N(0, 0.1^2), shape (1, latent), shared by the batch.
LEAKY_SLOPE = 0.3  # Keras' LeakyReLU default, which the notebook uses.
# The notebook keeps Keras' default GlorotUniform kernels; this reference always receives its
# weights afterwards (randomize, set_flax_variables, load_weights), and on the JAX backend each
# random initializer compiles one program per shape (~10 s per model on CPU), so it starts at 0.
INIT = "zeros"
_CLASSES: dict = {}


def keras_module():
  """keras, imported with the JAX backend (unless something imported keras before)."""
  if "keras" not in sys.modules:
    os.environ["KERAS_BACKEND"] = "jax"
  import keras  # pylint: disable=import-outside-toplevel
  return keras


def build_preprocesser():
  keras = keras_module()
  inputs = keras.Input(shape=(64, 64, 3))
  return keras.Model(inputs, keras.layers.Rescaling(1.0 / 255)(inputs), name="preprocesser")


def build_encoder(latent_dim: int = 100):
  """4 x [Conv2D(k4, s2, same), BatchNormalization, LeakyReLU] -> Flatten -> Dense mean, logvar."""
  keras = keras_module()
  layers = keras.layers
  inputs = keras.Input(shape=(64, 64, 3))
  x = inputs
  for channels in (32, 64, 128, 256):
    x = layers.Conv2D(channels, (4, 4), strides=2, padding="same", kernel_initializer=INIT)(x)
    x = layers.BatchNormalization(axis=-1)(x)
    x = layers.LeakyReLU(negative_slope=LEAKY_SLOPE)(x)
  x = layers.Flatten(data_format="channels_last")(x)
  z_mean = layers.Dense(units=latent_dim, activation=None, kernel_initializer=INIT)(x)
  z_log_sigma = layers.Dense(units=latent_dim, activation=None, kernel_initializer=INIT)(x)

  def sampling(args):
    mean, log_sigma = args
    epsilon = keras.random.normal(shape=(1, latent_dim), mean=0.0, stddev=EPS_STD)
    return mean + keras.ops.exp(log_sigma / 2) * epsilon

  z = layers.Lambda(sampling, output_shape=(latent_dim,))([z_mean, z_log_sigma])
  return keras.Model(inputs, [z_mean, z_log_sigma, z], name="encoder")


def build_decoder(latent_dim: int = 100):
  """Dense(4096, relu) -> (4, 4, 256) -> 3 x [Up2x, Conv2D(k3, same), BN, LeakyReLU] -> Up2x ->
  Conv2D(3)."""
  keras = keras_module()
  layers = keras.layers
  inputs = keras.Input(shape=(latent_dim,))
  x = layers.Dense(units=4 * 4 * 256, activation="relu", kernel_initializer=INIT)(inputs)
  x = layers.Reshape((4, 4, 256))(x)
  for channels in (128, 64, 32):
    x = layers.UpSampling2D((2, 2), data_format="channels_last", interpolation="nearest")(x)
    x = layers.Conv2D(channels, (3, 3), padding="same", strides=(1, 1),
                      kernel_initializer=INIT)(x)
    x = layers.BatchNormalization()(x)
    x = layers.LeakyReLU(negative_slope=LEAKY_SLOPE)(x)
  x = layers.UpSampling2D((2, 2))(x)
  # Linear: pixels on the 0-255 scale.
  decoded = layers.Conv2D(3, (3, 3), padding="same", kernel_initializer=INIT)(x)
  return keras.Model(inputs, decoded, name="decoder")


def pvae_class():
  """The notebook's subclassed PVAE (preprocesser, encoder, decoder), with get_config for .keras."""
  if "PVAE" not in _CLASSES:
    keras = keras_module()

    class PVAE(keras.Model):
      """uint8 images -> (z_mean, z_log_sigma, reconstruction on the 0-255 scale)."""

      def __init__(self, preprocesser, encoder, decoder, alpha=1.8, beta=10.0, **kwargs):
        super().__init__(**kwargs)
        self.preprocesser = preprocesser
        self.encoder = encoder
        self.decoder = decoder
        self.alpha = alpha
        self.beta = beta
        self.loss_tracker = keras.metrics.Mean(name="loss")

      def call(self, data):
        z_mean, z_log_sigma, z = self.encoder(self.preprocesser(data))
        return z_mean, z_log_sigma, self.decoder(z)

      def get_config(self):
        serialize = keras.saving.serialize_keras_object
        return {**super().get_config(), "alpha": self.alpha, "beta": self.beta,
                "preprocesser": serialize(self.preprocesser), "encoder": serialize(self.encoder),
                "decoder": serialize(self.decoder)}

    _CLASSES["PVAE"] = PVAE
  return _CLASSES["PVAE"]


def build_pvae(latent_dim: int = 100, decoder_first: bool = False):
  """The original PVAE, built. `decoder_first` creates the decoder's layers first (other names)."""
  if decoder_first:
    decoder = build_decoder(latent_dim)
    encoder = build_encoder(latent_dim)
  else:
    encoder = build_encoder(latent_dim)
    decoder = build_decoder(latent_dim)
  model = pvae_class()(build_preprocesser(), encoder, decoder)
  model(np.zeros((1, 64, 64, 3), np.float32))
  return model


def functional(model):
  """The same sub-models (shared weights) as one functional model, which Keras can save as .h5."""
  keras = keras_module()
  inputs = keras.Input(shape=(64, 64, 3))
  _, _, z = model.encoder(model.preprocesser(inputs))
  return keras.Model(inputs, model.decoder(z), name="pvae_functional")


def slot_layers(model) -> dict[str, object]:
  """flax module (port.keras.tables.PVAE_TABLE) -> the Keras layer of `model` that it mirrors."""
  from port.keras.tables import PVAE_TABLE  # pylint: disable=import-outside-toplevel

  keras = keras_module()
  kinds = {"conv": keras.layers.Conv2D, "dense": keras.layers.Dense,
           "bn": keras.layers.BatchNormalization}
  by_kind = {kind: [l for m in (model.encoder, model.decoder) for l in m.layers
                    if isinstance(l, cls)] for kind, cls in kinds.items()}
  counters = {kind: 0 for kind in kinds}
  slots = {}
  for kind, module in PVAE_TABLE:
    slots[module] = by_kind[kind][counters[kind]]
    counters[kind] += 1
  return slots


def set_flax_variables(model, variables) -> None:
  """Loads flax PVAE variables into the Keras model, layer by layer (kernels are HWIO in both)."""
  from port.keras.tables import WEIGHTS  # pylint: disable=import-outside-toplevel

  keras = keras_module()
  for module, layer in slot_layers(model).items():
    kind = "bn" if isinstance(layer, keras.layers.BatchNormalization) else "conv"
    node = {coll: variables[coll] for coll in ("params", "batch_stats")}
    values = []
    for _, collection, flax_name in WEIGHTS[kind]:
      tree = node[collection]
      for part in module.split("/"):
        tree = tree[part]
      values.append(np.asarray(tree[flax_name], np.float32))
    layer.set_weights(values)


def randomize(model, seed: int = 0) -> None:
  """Random weights and BatchNorm statistics; the last conv is scaled so pixels span ~0-255."""
  rng = np.random.default_rng(seed)
  keras = keras_module()
  slots = slot_layers(model)
  for module, layer in slots.items():
    if isinstance(layer, keras.layers.BatchNormalization):
      n = layer.gamma.shape[0]
      layer.set_weights([(0.5 + rng.random(n)).astype(np.float32),
                         (0.1 * rng.standard_normal(n)).astype(np.float32),
                         (0.1 * rng.standard_normal(n)).astype(np.float32),
                         (0.5 + rng.random(n)).astype(np.float32)])
    else:
      kernel, bias = layer.get_weights()
      fan_in = int(np.prod(kernel.shape[:-1]))
      kernel = rng.standard_normal(kernel.shape) * np.sqrt(2.0 / fan_in)
      bias = 0.1 * rng.standard_normal(bias.shape)
      if module == "decoder_out":
        kernel, bias = 40.0 * kernel, bias + 127.5
      layer.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])


class Outputs(NamedTuple):
  x01: np.ndarray  # The preprocesser's output: images / 255.
  mean: np.ndarray
  logvar: np.ndarray
  recon: np.ndarray  # The decoder's raw output, on the 0-255 scale.


def forward(model, images: np.ndarray, eps: np.ndarray) -> Outputs:
  """The notebook's forward pass in inference mode, z = mean + exp(logvar / 2) * eps, given eps."""
  keras = keras_module()
  x01 = model.preprocesser(np.asarray(images, np.float32), training=False)
  mean, logvar, _ = model.encoder(x01, training=False)
  z = mean + keras.ops.exp(logvar / 2) * keras.ops.convert_to_tensor(eps)
  recon = model.decoder(z, training=False)
  return Outputs(*(np.asarray(keras.ops.convert_to_numpy(a)) for a in (x01, mean, logvar, recon)))
