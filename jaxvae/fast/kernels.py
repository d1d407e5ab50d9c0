"""Exact building blocks of the fast path: folded BatchNorm, phase-decomposed 2x up-sampling, heads.

Every function computes exactly what its torch/Keras layer computes (in real arithmetic), with
fewer FLOPs or a layout XLA's CPU backend runs well; tests/test_fast_kernels.py checks each one
against `lax.conv_general_dilated` / `lax.conv_transpose` on random shapes.

Phase decomposition: nearest 2x upsample + 1-pixel pad + 3x3 conv (DFC-VAE, PVAE) and a stride-2
k4 transposed conv (Vanilla: p1; Beta-VAE: p0 + output_padding) are, per output phase (row
parity x column parity), a 2x2 conv on the low-resolution input with the taps of that phase
summed: 2.25x fewer FLOPs than the up-sampled 3x3 conv and no up-sampled tensor. Two forms:
- "scatter" (zero padding: Vanilla, Beta-VAE, PVAE): ONE matmul per input pixel,
  [h w, C_in] @ [C_in, 16 C_out], then an overlap-add of 4 shifted slices and depth-to-space
  (torch's GEMM + col2im for ConvTranspose2d).
- "window" (edge padding: DFC-VAE): ONE 2x2 VALID conv with 4 C_out channels on the 1-pixel
  edge-padded input, then depth-to-space and a 1-pixel crop.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

# Per-axis tap tables of the 2x2 phase convs: TAPS[q][t] lists the original kernel taps summed
# into window tap t for phase slot q. Window s of the 1-padded input covers x[s-1], x[s].
# Upsample 2x + pad 1 + conv3: slot 0 is output 2s-1 (odd phase), slot 1 is output 2s (even).
UP3_TAPS = (((0, 1), (2,)), ((0,), (1, 2)))
# ConvT k4 s2: slot 0 = phase (2s-1 for p1 / 2s for p0), slot 1 = phase (2s for p1 / 2s+1 for p0).
CONVT4_TAPS = (((2,), (0,)), ((3,), (1,)))


def conv(x, kernel, stride: int = 1):
  """VALID NHWC convolution."""
  return jax.lax.conv_general_dilated(x, kernel, (stride, stride), "VALID",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


def pad1(x, mode: str):
  return jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode=mode)


def leaky(x, slope: float):
  return jnp.where(x >= 0, x, slope * x)


def tanh(x):
  """tanh(x) = 2 sigmoid(2x) - 1 (within 4e-7 of jnp.tanh): XLA:CPU's tanh is several times slower."""
  return 2 * jax.nn.sigmoid(2 * x) - 1


def fold_bn(kernel, bias, bn_params, bn_stats, eps: float):
  """Conv (kernel [..., C_out], bias [C_out]) followed by inference BatchNorm -> one conv:
  k * s and (b - mean) * s + beta with s = gamma / sqrt(var + eps)."""
  scale = bn_params["scale"] * jax.lax.rsqrt(bn_stats["var"] + eps)
  return kernel * scale, (bias - bn_stats["mean"]) * scale + bn_params["bias"]


def conv_bn(params, stats, name: str, eps: float):
  """(kernel, bias) of the flax block `name` = {conv, bn}, BatchNorm folded."""
  return fold_bn(params[name]["conv"]["kernel"], params[name]["conv"]["bias"], params[name]["bn"],
                 stats[name]["bn"], eps)


def convt_kernel(flax_kernel):
  """flax ConvTranspose(transpose_kernel=True) kernel [k, k, C_out, C_in] -> torch taps [k, k, C_in, C_out]."""
  return jnp.swapaxes(flax_kernel, 2, 3)


def phase_kernel(kernel, taps):
  """kernel [k, k, C_in, C_out] -> [2, 2, C_in, 4 * C_out], channels ordered (slot_h, slot_w, c)."""
  k = kernel.shape[0]
  sel = np.zeros((2, 2, k), np.float32)  # [slot, window tap, original tap]
  for q, per_tap in enumerate(taps):
    for t, originals in enumerate(per_tap):
      sel[q, t, list(originals)] = 1.0
  sel = jnp.asarray(sel)
  out = jnp.einsum("qtd,rue,deio->tuiqro", sel, sel, kernel,
                   precision=jax.lax.Precision.HIGHEST)
  c_in, c_out = kernel.shape[2], kernel.shape[3]
  return out.reshape(2, 2, c_in, 4 * c_out)


def depth_to_space(y, crop: int):
  """[B, h, w, 4C] with channels (slot_h, slot_w, c) -> [B, 2h - 2crop, 2w - 2crop, C]."""
  b, h, w, c4 = y.shape
  c = c4 // 4
  y = y.reshape(b, h, w, 2, 2, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, 2 * h, 2 * w, c)
  return y[:, crop:2 * h - crop, crop:2 * w - crop] if crop else y


def interleave(planes):
  """planes[r][c] [n, h, w, C] -> [n, 2h, 2w, C]; planes[r][c][:, i, j] is pixel (2i+r, 2j+c)."""
  n, h, w, c = planes[0][0].shape
  return jnp.stack([jnp.stack(row, 3) for row in planes], 2).reshape(n, 2 * h, 2 * w, c)


def phase_up(x, kernel, pad_mode: str, crop: int, extra: int = 0):
  """2x up-sampling op as one 2x2 conv + depth-to-space (bias NOT added). extra = output_padding."""
  y = depth_to_space(conv(pad1(x, pad_mode), kernel), crop)
  if extra:  # ConvT output_padding: extra rows/cols that only receive the bias.
    y = jnp.pad(y, ((0, 0), (0, extra), (0, extra), (0, 0)))
  return y


def scatter_kernel(phase):
  """Phase kernel [2, 2, C_in, 4 C_out] -> per-input-pixel kernel [C_in, 16 C_out].

  Channels (u_h, u_w, v_h, v_w, c): input pixel i lands on padded-output row 2 (i + u) + v (and
  likewise for columns), i.e. on output row 2 (i + u) + v - crop.
  """
  c_in, c_out = phase.shape[2], phase.shape[3] // 4
  k = phase.reshape(2, 2, c_in, 2, 2, c_out)  # [t_h, t_w, c_in, q_h, q_w, c]
  # Pixel i is window tap t = 1 of window i and tap t = 0 of window i + 1; window s, slot q is
  # padded-output row 2 s + q. So u = 1 - t and v = q.
  k = k[::-1, ::-1]  # [u_h, u_w, c_in, v_h, v_w, c]
  return k.transpose(2, 0, 1, 3, 4, 5).reshape(c_in, 16 * c_out)


def scatter_up(x, kernel, crop: int, extra: int = 0):
  """The zero-padded 2x up-sampling op as ONE matmul per input pixel + overlap-add (bias NOT added).

  Same result as `phase_up(x, phase_kernel, "constant", crop, extra)` without its wasted windows
  ((h+1)^2 windows for h^2 pixels), and a plain dot.
  """
  b, h, w, c_in = x.shape
  c4 = kernel.shape[1] // 4
  y = (x.reshape(-1, c_in) @ kernel).reshape(b, h, w, 2, 2, c4)
  pad = lambda a, uh, uw: jnp.pad(a, ((0, 0), (uh, 1 - uh), (uw, 1 - uw), (0, 0)))
  y = (pad(y[:, :, :, 0, 0], 0, 0) + pad(y[:, :, :, 0, 1], 0, 1) + pad(y[:, :, :, 1, 0], 1, 0)
       + pad(y[:, :, :, 1, 1], 1, 1))
  y = depth_to_space(y, crop)
  if extra:
    y = jnp.pad(y, ((0, 0), (0, extra), (0, extra), (0, 0)))
  return y


def square_map(features: int, channels: int) -> tuple[int, int, int]:
  """(h, w, c) of a square map of `channels` flattened into `features` values."""
  side = math.isqrt(features // channels)
  if side * side * channels != features:
    raise ValueError(f"{features} features are not a square map of {channels} channels")
  return side, side, channels


def heads(params, name_mu: str, name_var: str, last_channels: int, nchw: bool):
  """fc_mu and fc_var as one [h*w*c, 2L] matmul on the NHWC-flattened features.

  `nchw`: the original flattens (c, h, w) (torch); the rows are permuted to (h, w, c) once here.
  """
  k = jnp.concatenate([params[name_mu]["kernel"], params[name_var]["kernel"]], axis=1)
  if nchw:
    h, w, c = square_map(k.shape[0], last_channels)
    k = k.reshape(c, h, w, -1).transpose(1, 2, 0, 3).reshape(c * h * w, -1)
  return k, jnp.concatenate([params[name_mu]["bias"], params[name_var]["bias"]])


def dense1(fc_kernel, fc_bias, block_fn, block_bias, channels: int, nchw: bool):
  """fc (latent -> c*h*w) followed by an affine block (no bias) + bias -> one (kernel, bias).

  Returns (kernel [L, H * W * C], bias [H * W * C], (H, W, C)): the block's output map, flattened
  (h, w, c).
  """
  h, w, c = square_map(fc_kernel.shape[1], channels)

  def unflatten(v):
    v = v.reshape(v.shape[0], c, h, w).transpose(0, 2, 3, 1) if nchw else v.reshape(-1, h, w, c)
    return block_fn(v)

  with jax.default_matmul_precision("highest"):
    kernel = unflatten(fc_kernel)
    bias = unflatten(fc_bias[None])[0] + block_bias
  return kernel.reshape(fc_kernel.shape[0], -1), bias.reshape(-1), tuple(kernel.shape[1:])
