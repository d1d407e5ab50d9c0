"""The torch originals' training steps: modules in train mode, their losses, torch.optim.Adam.

Losses as written in the originals:
- matthew-liu/beta-vae models.py `BetaVAE.loss` (also the DFC-VAE's):
    (F.binary_cross_entropy(recon_x, x, reduction='sum') + beta * KLD) / x.shape[0]
- hussamalafandi notebook 01 `loss_function`: F.mse_loss(recon_x, x, reduction='sum') + KLD
  with KLD = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()).
Learning rates: Beta-VAE 1e-4 (models.py, first train.py), DFC-VAE 1e-3 (last train.py),
Vanilla 1e-3 (the notebook's vae_config); Adam otherwise at torch's defaults.
"""

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from port import convert, tables, torch_ref

LEARNING_RATES = {"betavae": 1e-4, "dfcvae": 1e-3, "vanilla": 1e-3}
CLASSES = {"betavae": torch_ref.BetaVAE, "dfcvae": torch_ref.DFCVAE, "vanilla": torch_ref.VAE}


def kld(mu, logvar):
  return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())


def betavae_loss(recon_x, x, mu, logvar, beta=1.0):
  recon_loss = F.binary_cross_entropy(recon_x, x, reduction="sum")
  return (recon_loss + beta * kld(mu, logvar)) / x.shape[0]


def vanilla_loss(recon_x, x, mu, logvar, beta=1.0):
  return F.mse_loss(recon_x, x, reduction="sum") + beta * kld(mu, logvar)


LOSSES: dict[str, Callable] = {"betavae": betavae_loss, "dfcvae": betavae_loss,
                               "vanilla": vanilla_loss}


def to_flax(name: str, state_dict: dict[str, np.ndarray]) -> dict:
  """A torch state_dict (or one of gradients) -> the flax tree, through the port's own table for
  `name`, keeping the dtype (the port itself writes float32)."""
  table = tables.TORCH_MODELS[name].table
  return convert.unflatten({
      e.flax_path: np.asarray(e.transform(np.asarray(state_dict[e.torch_key]))) for e in table})


class Trainer:
  """The original module and its Adam; `step` runs one training iteration as train.py does."""

  def __init__(self, name: str, module: torch.nn.Module, lr: float | None = None,
               dtype: torch.dtype = torch.float32):
    self.name = name
    self.module = module.to(dtype).train()
    self.optimizer = torch.optim.Adam(module.parameters(), lr=lr or LEARNING_RATES[name])

  def step(self, x_nhwc: np.ndarray, eps: np.ndarray) -> tuple[float, dict[str, np.ndarray],
                                                                  np.ndarray]:
    """One step on [B, H, W, C] images; returns (loss, {param name: grad}, recon [B, H, W, C])."""
    dtype = next(self.module.parameters()).dtype
    x = torch.from_numpy(np.ascontiguousarray(np.transpose(x_nhwc, (0, 3, 1, 2)))).to(dtype)
    self.optimizer.zero_grad()
    recon, mu, logvar = self.module(x, torch.from_numpy(eps).to(dtype))
    loss = LOSSES[self.name](recon, x, mu, logvar)
    loss.backward()
    grads = {n: (p.grad.numpy().copy() if p.grad is not None
                 else np.zeros(p.shape, p.detach().numpy().dtype))
             for n, p in self.module.named_parameters()}
    self.optimizer.step()
    return float(loss.item()), grads, recon.detach().numpy().transpose(0, 2, 3, 1)

  def state_dict(self) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in self.module.state_dict().items()}

  def variables(self) -> dict:
    """Weights and running statistics in the flax layout."""
    return to_flax(self.name, self.state_dict())

  def flax_grads(self, grads: dict[str, np.ndarray]) -> dict:
    """Gradients in the flax layout ({"params": ...}): the same table maps them as the weights."""
    return {"params": to_flax(self.name, {**self.state_dict(), **grads})["params"]}

  @torch.no_grad()
  def decode(self, z: np.ndarray) -> np.ndarray:
    """Inference-mode decoder output [B, H, W, C] with the current weights."""
    self.module.eval()
    dtype = next(self.module.parameters()).dtype
    out = self.module.decode(torch.from_numpy(z).to(dtype)).numpy().transpose(0, 2, 3, 1)
    self.module.train()
    return out
