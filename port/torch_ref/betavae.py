"""BetaVAE as in matthew-liu/beta-vae models.py (inference parts only)."""

import torch
import torch.nn as nn


class BetaVAE(nn.Module):
  """The original Beta-VAE: no padding, ConvT output_padding=1 in the third block, BN->ReLU->Sigmoid."""

  def __init__(self, latent_size=32, beta=1):
    super().__init__()
    self.latent_size = latent_size
    self.beta = beta
    self.encoder = nn.Sequential(
        self._conv(3, 32), self._conv(32, 32), self._conv(32, 64), self._conv(64, 64))
    self.fc_mu = nn.Linear(256, latent_size)
    self.fc_var = nn.Linear(256, latent_size)
    self.decoder = nn.Sequential(
        self._deconv(64, 64), self._deconv(64, 32), self._deconv(32, 32, 1), self._deconv(32, 3),
        nn.Sigmoid())
    self.fc_z = nn.Linear(latent_size, 256)

  def encode(self, x):
    x = self.encoder(x)
    x = x.view(-1, 256)
    return self.fc_mu(x), self.fc_var(x)

  def decode(self, z):
    z = self.fc_z(z)
    z = z.view(-1, 64, 2, 2)
    return self.decoder(z)

  def forward(self, x, eps):
    mu, logvar = self.encode(x)
    z = mu + torch.exp(0.5 * logvar) * eps
    return self.decode(z), mu, logvar

  def _conv(self, in_channels, out_channels):
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=4, stride=2),
        nn.BatchNorm2d(out_channels), nn.ReLU())

  def _deconv(self, in_channels, out_channels, out_padding=0):
    return nn.Sequential(
        nn.ConvTranspose2d(in_channels, out_channels, kernel_size=4, stride=2,
                           output_padding=out_padding),
        nn.BatchNorm2d(out_channels), nn.ReLU())
