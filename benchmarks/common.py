"""Shared pieces of the benchmarks: models with weights in both frameworks, torch pipelines
(original and reformulated), FLOP counts and timing.

Import jax only after XLA_FLAGS is final (benchmarks/generation.py sets it first).
"""

import os
import sys
import time
from typing import Callable, NamedTuple

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _path in (REPO, os.path.join(REPO, "tests")):
  if _path not in sys.path:
    sys.path.insert(0, _path)

MODEL_NAMES = ("vanilla", "betavae", "dfcvae", "pvae")


def randomize_flax(variables, seed: int):
  """tests/random_weights.randomize_flax, imported on use (it imports jax; this module does not)."""
  import random_weights  # pylint: disable=import-outside-toplevel
  return random_weights.randomize_flax(variables, seed)
SHARED = os.environ.get("JAXVAE_SHARED", os.path.join(REPO, "..", "shared"))
BETAVAE_L200 = os.path.join(SHARED, "checkpoints", "beta-vae", "l200-100.pt")


# ---------------------------------------------------------------------------- FLOPs


def _conv(h_out, c_in, c_out, k):
  return 2 * h_out * h_out * c_out * c_in * k * k


def _convt(h_in, c_in, c_out, k):
  return 2 * h_in * h_in * c_in * c_out * k * k  # Every input pixel meets every tap once.


def _dense(n_in, n_out):
  return 2 * n_in * n_out


def original_flops(name: str, latent: int) -> dict[str, int]:
  """Multiply-adds x 2 of the original formulation, per image: {'encode': ..., 'decode': ...}.

  Convs and dense layers only (BatchNorm, activations, upsampling and padding are a few
  hundred kFLOPs and not counted). Transposed convs count their useful products
  (H_in W_in C_in C_out k^2), as torch computes them, not a conv over a zero-dilated input.
  """
  if name in ("vanilla", "dfcvae", "pvae"):
    enc = (_conv(32, 3, 32, 4) + _conv(16, 32, 64, 4) + _conv(8, 64, 128, 4)
           + _conv(4, 128, 256, 4) + 2 * _dense(4096, latent))
  else:  # betavae: k4 s2 p0, 64 -> 31 -> 14 -> 6 -> 2
    enc = (_conv(31, 3, 32, 4) + _conv(14, 32, 32, 4) + _conv(6, 32, 64, 4)
           + _conv(2, 64, 64, 4) + 2 * _dense(256, latent))
  if name == "vanilla":
    dec = (_dense(latent, 4096) + _convt(4, 256, 128, 4) + _convt(8, 128, 64, 4)
           + _convt(16, 64, 32, 4) + _convt(32, 32, 3, 4))
  elif name == "betavae":
    dec = (_dense(latent, 256) + _convt(2, 64, 64, 4) + _convt(6, 64, 32, 4)
           + _convt(14, 32, 32, 4) + _convt(31, 32, 3, 4))
  else:  # dfcvae, pvae: dense, then 4 x [up 2x, conv 3x3] at 8, 16, 32, 64
    dec = (_dense(latent, 4096) + _conv(8, 256, 128, 3) + _conv(16, 128, 64, 3)
           + _conv(32, 64, 32, 3) + _conv(64, 32, 3, 3))
  return {"encode": enc, "decode": dec}


# ---------------------------------------------------------------------------- models


class Pair(NamedTuple):
  name: str
  model: object  # flax module (reference)
  variables: object
  torch_module: object  # the original in torch (eval), NCHW
  source: str  # where the weights come from


def torch_pvae(model, variables):
  """The Keras PVAE rebuilt in torch (NCHW) with the flax variables: the PVAE's 'original' here.

  (The original is a Keras notebook; Keras is not installed, and this is the same network in
  torch, layer for layer: Conv 'same' = zero pad 1, BN eps 1e-3, LeakyReLU 0.3, Keras Flatten and
  Reshape in (h, w, c) order.)
  """
  import torch
  import torch.nn as nn
  import torch.nn.functional as F

  p, s = variables["params"], variables["batch_stats"]
  t = lambda a: torch.from_numpy(np.array(a, np.float32))

  def conv(c_in, c_out, k, stride, kernel, bias):
    m = nn.Conv2d(c_in, c_out, k, stride, padding=1)
    m.weight.data = t(np.transpose(np.asarray(kernel), (3, 2, 0, 1)))
    m.bias.data = t(bias)
    return m

  def bn(c, params, stats):
    m = nn.BatchNorm2d(c, eps=1e-3)
    m.weight.data, m.bias.data = t(params["scale"]), t(params["bias"])
    m.running_mean.data, m.running_var.data = t(stats["mean"]), t(stats["var"])
    return m

  def dense(params):
    m = nn.Linear(*np.asarray(params["kernel"]).shape)
    m.weight.data, m.bias.data = t(np.asarray(params["kernel"]).T), t(params["bias"])
    return m

  class PVAE(nn.Module):
    def __init__(self):
      super().__init__()
      chans = [(3, 32), (32, 64), (64, 128), (128, 256)]
      self.encoder = nn.ModuleList(
          nn.Sequential(conv(a, b, 4, 2, p[f"encoder_{i}"]["conv"]["kernel"],
                             p[f"encoder_{i}"]["conv"]["bias"]),
                        bn(b, p[f"encoder_{i}"]["bn"], s[f"encoder_{i}"]["bn"]), nn.LeakyReLU(0.3))
          for i, (a, b) in enumerate(chans))
      self.z_mean, self.z_log_var = dense(p["z_mean"]), dense(p["z_log_var"])
      self.decoder_dense = dense(p["decoder_dense"])
      chans = [(256, 128), (128, 64), (64, 32)]
      self.decoder = nn.ModuleList(
          nn.Sequential(nn.Upsample(scale_factor=2),
                        conv(a, b, 3, 1, p[f"decoder_{i}"]["conv"]["kernel"],
                             p[f"decoder_{i}"]["conv"]["bias"]),
                        bn(b, p[f"decoder_{i}"]["bn"], s[f"decoder_{i}"]["bn"]), nn.LeakyReLU(0.3))
          for i, (a, b) in enumerate(chans))
      self.decoder_out = conv(32, 3, 3, 1, p["decoder_out"]["kernel"], p["decoder_out"]["bias"])
      self.sigmoid = model.output_activation == "sigmoid"

    def encode(self, x):
      for block in self.encoder:
        x = block(x)
      x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)
      return self.z_mean(x), self.z_log_var(x)

    def decode(self, z):
      x = F.relu(self.decoder_dense(z)).view(-1, 4, 4, 256).permute(0, 3, 1, 2)
      for block in self.decoder:
        x = block(x)
      x = self.decoder_out(F.interpolate(x, scale_factor=2))
      return torch.sigmoid(x) if self.sigmoid else x

  return PVAE().eval()


def build_pair(name: str, seed: int = 0, betavae_checkpoint: str | None = BETAVAE_L200) -> Pair:
  """The model in both frameworks with the same weights.

  Vanilla, DFC-VAE: the torch original with random weights and BN statistics, ported.
  Beta-VAE: the published l200-100.pt when available (random otherwise). PVAE: random flax
  variables, loaded into `torch_pvae`.
  """
  import torch
  import jax
  from jaxvae import models
  from port import convert, sources, torch_ref

  if name == "pvae":
    model = models.build("pvae")
    variables = models.init_variables(model, jax.random.key(seed))
    variables = randomize_flax(variables, seed)
    return Pair(name, model, variables, torch_pvae(model, variables), "random")
  if name == "betavae" and betavae_checkpoint and os.path.exists(betavae_checkpoint):
    state = sources.load_state_dict(betavae_checkpoint)
    converted = convert.convert(name, state)
    module = torch_ref.BetaVAE(converted.model.latent_dim)
    module.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
    return Pair(name, converted.model, converted.variables, module.eval(),
                os.path.basename(betavae_checkpoint))
  cls, latent = {"vanilla": (torch_ref.VAE, 200), "betavae": (torch_ref.BetaVAE, 32),
                 "dfcvae": (torch_ref.DFCVAE, 100)}[name]
  from random_weights import randomize_torch  # pylint: disable=import-outside-toplevel
  module = randomize_torch(cls(latent), seed)
  converted = convert.convert(name, {k: v.numpy() for k, v in module.state_dict().items()})
  return Pair(name, converted.model, converted.variables, module, "random")


# ---------------------------------------------------------------------------- torch pipelines


class TorchFast:
  """The same exact reformulation as jaxvae.fast's recipes (jaxvae/fast/<model>.py: folded BN,
  dense1, phase convs, Karatsuba and Winograd forms of jaxvae/fast/products.py) in torch.

  jaxvae's scatter-form layers (zero padding: one matmul per input pixel + overlap-add) are
  torch's native ConvTranspose2d k4 s2 with the equivalent kernel; the phase convs (DFC-VAE's edge
  padding) are a 2x2 conv + pixel_shuffle.
  """

  def __init__(self, model, prepared, channels_last: bool):
    import torch
    from jaxvae import models
    t = lambda a: torch.from_numpy(np.array(a, np.float32))
    self.kind = type(model).__name__
    self.model = model
    self.channels_last = channels_last
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    # Conv kernels -> torch OIHW; Winograd-form kernels [9, 4 C_in, C_out] stay for torch.bmm.
    self.enc = [(t(k) if np.ndim(k) == 3 else
                 t(np.transpose(np.asarray(k), (3, 2, 0, 1))).contiguous(memory_format=fmt), t(b))
                for k, b in prepared.encoder["convs"]]
    hk, hb = prepared.encoder["heads"]
    self.heads = (t(hk), t(hb))
    dk, db = prepared.decoder["dense"]
    self.dense = (t(dk), t(db))
    self.ups = []
    for k, b in prepared.decoder["ups"]:
      k = np.asarray(k)
      if k.ndim == 3:  # Karatsuba form (Vanilla VAE): [9, C_in, 4 C_out] for torch.bmm
        self.ups.append((t(k[..., :4 * np.shape(b)[0]]), t(b), None))  # (without jaxvae's padding).
        continue
      if k.ndim == 2:  # Scatter form [C_in, (u_h, u_w, v_h, v_w, c)]: a ConvTranspose2d k4 s2.
        c_in, c_out = k.shape[0], k.shape[1] // 16
        w = k.reshape(c_in, 2, 2, 2, 2, c_out).transpose(0, 5, 1, 3, 2, 4).reshape(c_in, c_out, 4, 4)
        self.ups.append((t(w).contiguous(memory_format=fmt), t(b), None))
        continue
      c_in, c_out = k.shape[2], k.shape[3] // 4
      # (slot_h, slot_w, c) channels -> torch pixel_shuffle's (c, slot_h, slot_w).
      w = k.reshape(2, 2, c_in, 2, 2, c_out).transpose(5, 3, 4, 2, 0, 1).reshape(4 * c_out, c_in, 2, 2)
      self.ups.append((t(w).contiguous(memory_format=fmt), t(b), t(np.repeat(np.asarray(b), 4))))
    self.is_vanilla = isinstance(model, models.VanillaVAE)
    self.is_beta = isinstance(model, models.BetaVAE)
    self.is_dfc = isinstance(model, models.DFCVAE)

  def _act_enc(self, x):
    import torch.nn.functional as F
    if self.is_vanilla or self.is_beta:
      return F.relu(x)
    return F.leaky_relu(x, 0.01 if self.is_dfc else 0.3)

  def encode(self, x):
    import torch.nn.functional as F
    for k, b in self.enc:
      if k.ndim == 3:  # Winograd form, NHWC (a free view of channels_last, a copy of NCHW).
        x = x.permute(0, 2, 3, 1)
        x = self._act_enc(_torch_winograd_conv(x, k) + b).permute(0, 3, 1, 2)
      else:  # Beta-VAE: unpadded stride-2 conv.
        x = self._act_enc(F.conv2d(x, k, b, stride=2))
    x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)
    hk, hb = self.heads
    out = x @ hk + hb
    latent = hk.shape[1] // 2
    return out[:, :latent], out[:, latent:]

  def _up(self, x, k, b_rep, b, mode, crop, extra=0):
    import torch.nn.functional as F
    if b_rep is None:  # Scatter form: torch's own ConvTranspose2d (GEMM + col2im).
      return F.conv_transpose2d(x, k, b, stride=2, padding=crop, output_padding=extra)
    x = F.pad(x, (1, 1, 1, 1), mode=mode)
    if extra:
      y = F.pixel_shuffle(F.conv2d(x, k), 2)
      y = F.pad(y, (0, extra, 0, extra))
      return y + b.view(1, -1, 1, 1)
    y = F.pixel_shuffle(F.conv2d(x, k, b_rep), 2)
    return y[:, :, crop:y.shape[2] - crop, crop:y.shape[3] - crop] if crop else y

  def decode(self, z):
    import torch
    import torch.nn.functional as F
    dk, db = self.dense
    x = z @ dk + db
    fmt = torch.channels_last if self.channels_last else torch.contiguous_format
    if self.is_vanilla:  # Tile-planar, channels last, as jaxvae.fast.vanilla (CL moot).
      x = F.relu(x).view(-1, 2, 2, 4, 4, 128)
      x = [[x[:, 0, 0], x[:, 0, 1]], [x[:, 1, 0], x[:, 1, 1]]]
      for i, (k, b, _) in enumerate(self.ups):
        x = _torch_karatsuba_up(x, k, b, F.relu if i < len(self.ups) - 1 else None)
      x = _torch_interleave(x).permute(0, 3, 1, 2)
      return torch.tanh(x) if self.model.output_activation == "tanh" else torch.sigmoid(x)
    if self.is_beta:
      x = F.relu(x).view(-1, 6, 6, 64).permute(0, 3, 1, 2).contiguous(memory_format=fmt)
      for (k, b, br), extra in zip(self.ups, (0, 1, 0)):
        x = F.relu(self._up(x, k, br, b, "constant", 0, extra))
      return torch.sigmoid(x)
    if self.is_dfc:
      x = F.leaky_relu(x, 0.01).view(-1, 8, 8, 128).permute(0, 3, 1, 2).contiguous(memory_format=fmt)
      for k, b, br in self.ups:
        x = F.leaky_relu(self._up(x, k, br, b, "replicate", 1), 0.01)
      return torch.sigmoid(x)
    x = F.relu(x).view(-1, 4, 4, 256).permute(0, 3, 1, 2).contiguous(memory_format=fmt)
    for k, b, br in self.ups[:-1]:
      x = F.leaky_relu(self._up(x, k, br, b, "constant", 1), 0.3)
    k, b, br = self.ups[-1]
    x = self._up(x, k, br, b, "constant", 1)
    return torch.sigmoid(x) if self.model.output_activation == "sigmoid" else x


def _torch_karatsuba_outputs(p, q: int, dim: int):
  """jaxvae.fast.products._karatsuba_outputs in torch."""
  import torch.nn.functional as F
  p0, p1, p2 = p
  middle = p2 - p0 - p1
  n = p0.shape[dim]
  pad = [0, 0] * (p0.ndim - 1 - dim)  # F.pad lists the last dimension first.
  if q == 0:
    return p0 + F.pad(p1, pad + [1, 0]).narrow(dim, 0, n), middle
  return middle, p1 + F.pad(p0, pad + [0, 1]).narrow(dim, 1, n)


def _torch_interleave(planes):
  """jaxvae.fast.kernels.interleave in torch."""
  import torch
  n, h, w, c = planes[0][0].shape
  return torch.stack([torch.stack(row, 3) for row in planes], 2).reshape(n, 2 * h, 2 * w, c)


def _torch_karatsuba_up(x, kernel, bias, act):
  """jaxvae.fast.products.karatsuba_up in torch (torch.bmm for the 9 products)."""
  import torch
  n, h, w, c_in = x[0][0].shape
  pairs = (x[0], x[1], [x[0][0] + x[1][0], x[0][1] + x[1][1]])
  v = torch.stack([t for r in pairs for t in (r[0], r[1], r[0] + r[1])]).reshape(9, -1, c_in)
  p = torch.bmm(v, kernel).reshape(3, 3, n, h, w, 2, 2, -1)
  planes = [[None, None], [None, None]]
  for qh in range(2):
    for qw in range(2):
      cols = [_torch_karatsuba_outputs([p[uh, uw, :, :, :, qh, qw] for uw in range(3)], qw, 2)
              for uh in range(3)]
      rows = [_torch_karatsuba_outputs([cols[uh][rw] for uh in range(3)], qh, 1) for rw in range(2)]
      y = _torch_interleave([[rows[rw][rh] for rw in range(2)] for rh in range(2)]) + bias
      planes[qh][qw] = act(y) if act else y
  return planes


def _torch_winograd_conv(x, kernel):
  """jaxvae.fast.products.winograd_conv in torch: x [n, h, w, C_in] -> [n, h/2, w/2, C_out]."""
  import torch
  import torch.nn.functional as F
  n, h, w, c = x.shape
  th, tw = h // 4, w // 4
  d = F.pad(x, (0, 0, 1, 1, 1, 1)).reshape(n, h // 2 + 1, 2, w // 2 + 1, 2, c)
  d = d.permute(0, 1, 3, 2, 4, 5).reshape(n, h // 2 + 1, w // 2 + 1, 4 * c)
  window = lambda a, b: d[:, a:a + 2 * th - 1:2, b:b + 2 * tw - 1:2]
  rows = [(window(0, b) - window(1, b), window(1, b), window(2, b) - window(1, b))
          for b in range(3)]
  v = torch.stack([t for r in zip(*rows) for t in (r[0] - r[1], r[1], r[2] - r[1])])
  m = torch.bmm(v.reshape(9, -1, 4 * c), kernel).reshape(3, 3, n, th, tw, -1)
  ys = (m[0] + m[1], m[1] + m[2])
  return _torch_interleave([[r[0] + r[1], r[1] + r[2]] for r in ys])


def torch_generate(module, x_nchw, eps, chunk: int, channels_last: bool, value_range,
                   encoder=None):
  """Encode B faces, z = mean + exp(logvar / 2) eps for K variations, decode B*K in chunks.

  x_nchw: [B, 3, 64, 64] torch tensor in the model's input range; eps: [B, K, L] tensor.
  `encoder` (default `module`) encodes; the originals' encoders end in .view(), which refuses
  channels_last tensors, so for them the encoder is the NCHW module and only decoding runs in
  channels_last. Returns [B*K, 3, 64, 64] in [0, 1] (clamped), like jaxvae's outputs.
  """
  import torch
  lo, hi = value_range
  encoder = module if encoder is None else encoder
  with torch.inference_mode():
    x = x_nchw.contiguous(memory_format=torch.channels_last) if channels_last and encoder is module else x_nchw
    n = x.shape[0]
    step = chunk if chunk > 0 else n
    parts = [encoder.encode(x[i:i + step]) for i in range(0, n, step)]
    mean = torch.cat([m for m, _ in parts])
    logvar = torch.cat([v for _, v in parts])
    z = (mean[:, None] + torch.exp(0.5 * logvar)[:, None] * eps).reshape(-1, mean.shape[1])
    step = chunk if chunk > 0 else z.shape[0]
    y = torch.cat([module.decode(z[i:i + step]) for i in range(0, z.shape[0], step)])
    return ((y - lo) / (hi - lo)).clamp_(0.0, 1.0)


# ---------------------------------------------------------------------------- timing


# Idle seconds before each timed call. torch's OpenMP workers keep spinning for a while after a
# call returns; measured on the 2-core VM, jaxvae started right after torch ran 3.5% slower
# (4460 vs 4617 images/s), and as fast as alone after a 0.2 s pause.
PAUSE_S = 0.2


def interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
  """Seconds of each fn over `repeats` rounds; each round runs every fn once, order rotating,
  each call after a PAUSE_S idle pause."""
  labels = list(fns)
  times = {k: [] for k in labels}
  for r in range(repeats):
    order = labels[r % len(labels):] + labels[:r % len(labels)]
    for k in order:
      time.sleep(PAUSE_S)
      start = time.perf_counter()
      fns[k]()
      times[k].append(time.perf_counter() - start)
  return times


def median(xs) -> float:
  return float(np.median(np.asarray(xs)))
