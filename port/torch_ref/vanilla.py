"""VAE of hussamalafandi/Generative_AI notebooks/01 (the HF hussamalafandi/VAE-CelebA checkpoint)."""

import torch
import torch.nn as nn


class VAE(nn.Module):
  """Encoder 4 x [Conv k4 s2 p1, ReLU]; fc_mu, fc_logvar; decoder_input; 4 x ConvT k4 s2 p1; Tanh."""

  def __init__(self, latent_dim=200):
    super().__init__()
    self.encoder = nn.Sequential(
        nn.Conv2d(3, 32, 4, 2, 1), nn.ReLU(),
        nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(),
        nn.Conv2d(64, 128, 4, 2, 1), nn.ReLU(),
        nn.Conv2d(128, 256, 4, 2, 1), nn.ReLU())
    self.fc_mu = nn.Linear(256 * 4 * 4, latent_dim)
    self.fc_logvar = nn.Linear(256 * 4 * 4, latent_dim)
    self.decoder_input = nn.Linear(latent_dim, 256 * 4 * 4)
    self.decoder = nn.Sequential(
        nn.ConvTranspose2d(256, 128, 4, 2, 1), nn.ReLU(),
        nn.ConvTranspose2d(128, 64, 4, 2, 1), nn.ReLU(),
        nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(),
        nn.ConvTranspose2d(32, 3, 4, 2, 1), nn.Tanh())

  def encode(self, x):
    x = self.encoder(x).view(x.size(0), -1)
    return self.fc_mu(x), self.fc_logvar(x)

  def decode(self, z):
    return self.decoder(self.decoder_input(z).view(-1, 256, 4, 4))

  def forward(self, x, eps):
    mu, logvar = self.encode(x)
    z = mu + torch.exp(0.5 * logvar) * eps
    return self.decode(z), mu, logvar
