r"""python main.py --config=configs/dfcvae.py --mode=variations --workdir=out/dfcvae

DFC-VAE (matthew-liu/beta-vae), latent 100, published checkpoint dfc-400.
"""

from configs import common


def get_config():
  return common.get_config("dfcvae", "dfcvae-400")
