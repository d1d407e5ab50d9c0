"""Torch definitions of the original models, with the originals' module names so state_dict keys match."""

from port.torch_ref.betavae import BetaVAE
from port.torch_ref.dfcvae import DFCVAE
from port.torch_ref.vanilla import VAE

__all__ = ["BetaVAE", "DFCVAE", "VAE"]
