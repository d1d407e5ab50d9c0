"""Vanilla VAE (hussamalafandi/VAE-CelebA): flax path <- torch key + transform."""

from port import transforms
from port.tables import common

_TABLE = [
    *[e for i in range(4) for e in common.conv(f"encoder_{i}", f"encoder.{2 * i}")],
    *common.linear("fc_mu", "fc_mu"),
    *common.linear("fc_logvar", "fc_logvar"),
    *common.linear("decoder_input", "decoder_input"),
    *[e for i in range(4)
      for e in common.conv(f"decoder_{i}", f"decoder.{2 * i}", transforms.conv_transpose)],
]

MODEL = common.TorchModel(_TABLE, common.latent_axes("fc_mu", "fc_logvar", "decoder_input"), (), "VAE")
