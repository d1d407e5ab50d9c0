"""DFCVAE as in matthew-liu/beta-vae models.py (inference parts only)."""

import torch
import torch.nn as nn
import torch.nn.functional as F

from port.torch_ref.betavae import BetaVAE


class DFCVAE(BetaVAE):
  """The original DFC-VAE; calling BetaVAE.__init__ leaves unused encoder.*/decoder.* in its state_dict."""

  def __init__(self, latent_size=100, beta=1):
    super().__init__(latent_size, beta)
    self.e1 = self._encoder_block(3, 32)
    self.e2 = self._encoder_block(32, 64)
    self.e3 = self._encoder_block(64, 128)
    self.e4 = self._encoder_block(128, 256)
    self.fc_mu = nn.Linear(4096, latent_size)
    self.fc_var = nn.Linear(4096, latent_size)
    self.d1 = self._decoder_block(256, 128)
    self.d2 = self._decoder_block(128, 64)
    self.d3 = self._decoder_block(64, 32)
    self.d4 = self._decoder_block(32, 3)
    self.fc_z = nn.Linear(latent_size, 4096)

  def encode(self, x):
    x = F.leaky_relu(self.e1(x))
    x = F.leaky_relu(self.e2(x))
    x = F.leaky_relu(self.e3(x))
    x = F.leaky_relu(self.e4(x))
    x = x.view(-1, 4096)
    return self.fc_mu(x), self.fc_var(x)

  def decode(self, z):
    z = self.fc_z(z)
    z = z.view(-1, 256, 4, 4)
    z = F.leaky_relu(self.d1(F.interpolate(z, scale_factor=2)))
    z = F.leaky_relu(self.d2(F.interpolate(z, scale_factor=2)))
    z = F.leaky_relu(self.d3(F.interpolate(z, scale_factor=2)))
    z = F.leaky_relu(self.d4(F.interpolate(z, scale_factor=2)))
    return torch.sigmoid(z)

  def _encoder_block(self, in_channels, out_channels):
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 4, 2, 1), nn.BatchNorm2d(out_channels))

  def _decoder_block(self, in_channels, out_channels):
    return nn.Sequential(
        nn.ReplicationPad2d(1), nn.Conv2d(in_channels, out_channels, 3, 1), nn.BatchNorm2d(out_channels))
