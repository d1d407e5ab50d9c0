"""Beta-VAE (matthew-liu/beta-vae BetaVAE): flax path <- torch key + transform."""

from port import transforms
from port.tables import common

_TABLE = [
    *[e for i in range(4) for e in common.conv_bn(f"encoder_{i}", f"encoder.{i}.0", f"encoder.{i}.1")],
    *common.linear("fc_mu", "fc_mu"),
    *common.linear("fc_var", "fc_var"),
    *common.linear("fc_z", "fc_z"),
    *[e for i in range(4) for e in common.conv_bn(f"decoder_{i}", f"decoder.{i}.0", f"decoder.{i}.1",
                                            transforms.conv_transpose)],
]

MODEL = common.TorchModel(_TABLE, common.latent_axes("fc_mu", "fc_var", "fc_z"), (), "BetaVAE")
