"""Explicit conversion tables, one module per torch model: flax path <- torch key + transform.

Adding a torch model: a module here with its MODEL (table, latent axes, ignored keys, reference
class; see common.py's blocks) and its entry below.
"""

from port.tables import betavae, dfcvae, vanilla
from port.tables.common import Entry, TorchModel

__all__ = ["Entry", "TorchModel", "TORCH_MODELS"]

TORCH_MODELS = {"vanilla": vanilla.MODEL, "betavae": betavae.MODEL, "dfcvae": dfcvae.MODEL}
