"""DFC-VAE (matthew-liu/beta-vae DFCVAE): flax path <- torch key + transform."""

from port.tables import common

_TABLE = [
    *[e for i in range(1, 5) for e in common.conv_bn(f"e{i}", f"e{i}.0", f"e{i}.1")],
    *common.linear("fc_mu", "fc_mu"),
    *common.linear("fc_var", "fc_var"),
    *common.linear("fc_z", "fc_z"),
    *[e for i in range(1, 5) for e in common.conv_bn(f"d{i}", f"d{i}.1", f"d{i}.2")],
]

# DFCVAE calls BetaVAE.__init__, which leaves the unused encoder.* / decoder.* modules behind.
MODEL = common.TorchModel(_TABLE, common.latent_axes("fc_mu", "fc_var", "fc_z"),
                          ("encoder.", "decoder."), "DFCVAE")
