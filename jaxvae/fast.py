"""Exact inference reformulations of the four models, for fast encoding and decoding.

The flax modules in jaxvae/models/ are the reference (they are what the parity tests compare
against the originals); this module computes the same functions with fewer FLOPs and layouts that
XLA's CPU backend runs well. Every rewrite is exact in real arithmetic; in fp32 the results stay
within ~1e-6 of the reference modules (tests/test_fast.py asserts 1e-5 against them and against
the torch originals).

Rewrites:
- BatchNorm (inference) is folded into the preceding conv / transposed conv: k * s and
  (b - mean) * s + beta with s = gamma / sqrt(var + eps).
- Phase decomposition of every 2x up-sampling layer. Nearest 2x upsample + 1-pixel pad + 3x3 conv
  (DFC-VAE, PVAE) and a stride-2 k4 transposed conv (Vanilla: p1; Beta-VAE: p0 + output_padding)
  are, per output phase (row parity x column parity), a 2x2 conv on the low-resolution input with
  the taps of that phase summed: 2.25x fewer FLOPs than the up-sampled 3x3 conv, 4x fewer than
  XLA's conv over a zero-dilated input, and no up-sampled tensor. Two forms:
  * zero padding (Vanilla, Beta-VAE, PVAE), "scatter": ONE matmul per input pixel,
    [h w, C_in] @ [C_in, 16 C_out], then an overlap-add of 4 shifted slices and depth-to-space
    (torch's GEMM + col2im for ConvTranspose2d). No wasted FLOPs, and a dot (fast on XLA:CPU).
  * edge padding (DFC-VAE), "window": ONE 2x2 VALID conv with 4 C_out channels on the 1-pixel
    edge-padded input ((h+1)^2 windows for h^2 pixels), then depth-to-space and a 1-pixel crop.
- Karatsuba form of the Vanilla VAE's stride-2 k4 p1 transposed convs (its decoder is nothing
  else). Along one axis, output phase q (output 2m + q) is a 2-tap filter (a, b) of the input;
  on the input's aligned pairs (x0, x1) it is a 2-tap x 2-point linear convolution
  (a x0, b x0 + a x1, b x1), i.e. Karatsuba: p0 = a x0, p1 = b x1, p2 = (a + b)(x0 + x1), middle
  = p2 - p0 - p1, with overlap-add between neighbouring pairs. In 2D: 3 x 3 products per 2 x 2
  input tile instead of 4 x 4: nine matmuls [tiles, C_in] @ [C_in, 4 C_out] with 9/16 of the
  direct FLOPs. The (x0, x1, x0 + x1) transform is shared by the four output phases, and
  a layer's phase-q outputs at position m (pixel 2m + q) are the next layer's input pair m at
  position q, so activations stay "tile-planar" (four planes [n, h/2, w/2, C], one per pixel
  parity (row, column)) and pixels are interleaved only once, in the image.
- Winograd F(2, 2) form of the encoders' stride-2 k4 p1 convolutions (Vanilla, DFC-VAE, PVAE):
  on the space-to-depth pairs of the padded input such a conv is a 2-tap correlation, and two
  outputs take 3 products instead of 4 per axis: a batched matmul [9, tiles, 4 C_in] @
  [9, 4 C_in, C_out] with 9/16 of the products. (Beta-VAE's p0 encoder is not rewritten.)
- "dense1": the decoder's first Linear and its first up-sampling block are affine up to the first
  nonlinearity (Vanilla: fc -> ConvT; Beta-VAE: fc -> ConvT -> BN; DFC-VAE: fc -> up -> pad -> conv
  -> BN), so they collapse into ONE Linear(latent -> h*w*c) at prepare time. Not for the PVAE,
  whose decoder Dense has a ReLU.
- The encoders' NCHW flatten is folded into fc_mu / fc_var rows, and both heads are one matmul.

Schedule: the convolutions run in chunks of `chunk_size` images (lax.map; small chunks are what
XLA:CPU runs fastest), while the dense layers (dense1, the encoder heads) and the decoder's last
nonlinearity run once on the whole batch: their weights are read once instead of once per chunk,
and the transcendental runs on one contiguous array instead of inside the chunk's scatter loop,
where XLA:CPU does not vectorise it (benchmarks/README.md: Vanilla VAE 1.15-1.23x, Beta-VAE
1.22-1.26x images/s).

API (all pure and jittable; `model` is the reference module, hashable and static):

    params = prepare(model, variables)                  # once per checkpoint; idempotent
    mean, logvar = encode(model, params, x, chunk_size)  # x in the model's input range, [B, 64, 64, 3]
    y = decode(model, params, z, chunk_size)             # [N, 64, 64, 3] in the model's output range

encode/decode also accept raw `variables` (they call prepare inside the trace; the folding then
runs once per call: ~20 ms for DFC-VAE on a 2-core CPU, so prepare once when calling
repeatedly).
"""

import functools
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from jaxvae import models, schedule
from jaxvae.models import layers

# Per-axis tap tables of the 2x2 phase convs: TAPS[q][t] lists the original kernel taps summed
# into window tap t for phase slot q. Window s of the 1-padded input covers x[s-1], x[s].
# Upsample 2x + pad 1 + conv3: slot 0 is output 2s-1 (odd phase), slot 1 is output 2s (even).
_UP3_TAPS = (((0, 1), (2,)), ((0,), (1, 2)))
# ConvT k4 s2: slot 0 = phase (2s-1 for p1 / 2s for p0), slot 1 = phase (2s for p1 / 2s+1 for p0).
_CONVT4_TAPS = (((2,), (0,)), ((3,), (1,)))


@flax.struct.dataclass
class Prepared:
  """Folded weights of one model (a pytree of arrays): what encode/decode run on."""
  encoder: Any
  decoder: Any


# ---------------------------------------------------------------------------- building blocks


def _conv(x, kernel, stride: int = 1):
  return jax.lax.conv_general_dilated(x, kernel, (stride, stride), "VALID",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _pad1(x, mode: str):
  return jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode=mode)


def _fold_bn(kernel, bias, bn_params, bn_stats, eps: float):
  """Conv (kernel [..., C_out], bias [C_out]) followed by inference BatchNorm -> one conv."""
  scale = bn_params["scale"] * jax.lax.rsqrt(bn_stats["var"] + eps)
  return kernel * scale, (bias - bn_stats["mean"]) * scale + bn_params["bias"]


def _phase_kernel(kernel, taps):
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


def _depth_to_space(y, crop: int):
  """[B, h, w, 4C] with channels (slot_h, slot_w, c) -> [B, 2h - 2crop, 2w - 2crop, C]."""
  b, h, w, c4 = y.shape
  c = c4 // 4
  y = y.reshape(b, h, w, 2, 2, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, 2 * h, 2 * w, c)
  return y[:, crop:2 * h - crop, crop:2 * w - crop] if crop else y


def _interleave(planes):
  """planes[r][c] [n, h, w, C] -> [n, 2h, 2w, C]; planes[r][c][:, i, j] is pixel (2i+r, 2j+c)."""
  n, h, w, c = planes[0][0].shape
  return jnp.stack([jnp.stack(row, 3) for row in planes], 2).reshape(n, 2 * h, 2 * w, c)


def _phase_up(x, kernel, pad_mode: str, crop: int, extra: int = 0):
  """2x up-sampling op as one 2x2 conv + depth-to-space (bias NOT added). extra = output_padding."""
  y = _depth_to_space(_conv(_pad1(x, pad_mode), kernel), crop)
  if extra:  # ConvT output_padding: extra rows/cols that only receive the bias.
    y = jnp.pad(y, ((0, 0), (0, extra), (0, extra), (0, 0)))
  return y


def _scatter_kernel(phase_kernel):
  """Phase kernel [2, 2, C_in, 4 C_out] -> per-input-pixel kernel [C_in, 16 C_out].

  Channels (u_h, u_w, v_h, v_w, c): input pixel i lands on padded-output row 2 (i + u) + v (and
  likewise for columns), i.e. on output row 2 (i + u) + v - crop.
  """
  c_in, c_out = phase_kernel.shape[2], phase_kernel.shape[3] // 4
  k = phase_kernel.reshape(2, 2, c_in, 2, 2, c_out)  # [t_h, t_w, c_in, q_h, q_w, c]
  # Pixel i is window tap t = 1 of window i and tap t = 0 of window i + 1; window s, slot q is
  # padded-output row 2 s + q. So u = 1 - t and v = q.
  k = k[::-1, ::-1]  # [u_h, u_w, c_in, v_h, v_w, c]
  return k.transpose(2, 0, 1, 3, 4, 5).reshape(c_in, 16 * c_out)


def _scatter_up(x, kernel, crop: int, extra: int = 0):
  """The zero-padded 2x up-sampling op as ONE matmul per input pixel + overlap-add (bias NOT added).

  Same result as `_phase_up(x, phase_kernel, "constant", crop, extra)` without its wasted windows
  ((h+1)^2 windows for h^2 pixels), and a plain dot: what torch does for ConvTranspose2d (GEMM
  then col2im), here with the phase structure so that the overlap-add is 4 shifted adds.
  """
  b, h, w, c_in = x.shape
  c4 = kernel.shape[1] // 4
  y = (x.reshape(-1, c_in) @ kernel).reshape(b, h, w, 2, 2, c4)
  pad = lambda a, uh, uw: jnp.pad(a, ((0, 0), (uh, 1 - uh), (uw, 1 - uw), (0, 0)))
  y = (pad(y[:, :, :, 0, 0], 0, 0) + pad(y[:, :, :, 0, 1], 0, 1) + pad(y[:, :, :, 1, 0], 1, 0)
       + pad(y[:, :, :, 1, 1], 1, 1))
  y = _depth_to_space(y, crop)
  if extra:
    y = jnp.pad(y, ((0, 0), (0, extra), (0, extra), (0, 0)))
  return y


# Karatsuba form of ConvT k4 s2 p1 (Vanilla VAE). Per axis, output phase q is the 2-tap filter
# (a, b) = torch taps _KARATSUBA_TAPS[q] on the input pairs (x0, x1) = (x[2j], x[2j + 1]);
# products u = 0, 1, 2 are a x0, b x1, (a + b)(x0 + x1).
_KARATSUBA_TAPS = ((1, 3), (0, 2))


def _karatsuba_kernel(kernel):
  """kernel [4, 4, C_in, C_out] (torch taps) -> [9, C_in, 4 C_out]: products (u_h, u_w), channels
  (q_h, q_w, c)."""
  g = np.zeros((2, 3, 4), np.float32)  # [phase q, product u, torch tap]
  for q, (a, b) in enumerate(_KARATSUBA_TAPS):
    g[q, 0, a] = g[q, 1, b] = g[q, 2, a] = g[q, 2, b] = 1.0
  out = jnp.einsum("qak,rbl,klio->abiqro", g, g, kernel, precision=jax.lax.Precision.HIGHEST)
  return out.reshape(9, kernel.shape[2], 4 * kernel.shape[3])


def _karatsuba_outputs(p, q: int, axis: int):
  """Products (p0, p1, p2) of phase q on the input pairs J along `axis` -> the phase's outputs at
  positions 2J and 2J + 1 (pixels 2 (2J + R) + q): q = 0: (p0[J] + p1[J - 1], middle[J]);
  q = 1: (middle[J], p1[J] + p0[J + 1]); middle = p2 - p0 - p1. Pairs beyond the map are zero
  (the padding: its outputs are the cropped ones)."""
  p0, p1, p2 = p
  middle = p2 - p0 - p1
  n = p0.shape[axis]
  pad = [(0, 0)] * p0.ndim
  if q == 0:
    pad[axis] = (1, 0)
    return p0 + jax.lax.slice_in_dim(jnp.pad(p1, pad), 0, n, axis=axis), middle
  pad[axis] = (0, 1)
  return middle, p1 + jax.lax.slice_in_dim(jnp.pad(p0, pad), 1, n + 1, axis=axis)


def _karatsuba_up(x, kernel, bias, act):
  """ConvT k4 s2 p1 on a tile-planar map: x[r][c] [n, h, w, C_in] is pixel (2i + r, 2j + c) at
  [:, i, j] -> act(y + bias) in the same form, planes [n, 2h, 2w, C_out]. kernel: the nine
  [C_in, 4 C_out (+ zero columns)] of _karatsuba_kernel."""
  n, h, w, c_in = x[0][0].shape
  pairs = (x[0], x[1], [x[0][0] + x[1][0], x[0][1] + x[1][1]])  # Rows: (x0, x1, x0 + x1) ...
  v = [t for r in pairs for t in (r[0], r[1], r[0] + r[1])]  # ... then columns.
  # Nine dots, not one batched dot on the stacked v: stacking costs a copy (XLA:CPU).
  p = [(t.reshape(-1, c_in) @ k)[:, :4 * bias.shape[-1]].reshape(n, h, w, 2, 2, -1)
       for t, k in zip(v, kernel)]  # [u_h * 3 + u_w]: [n, J_h, J_w, q_h, q_w, c]
  planes = [[None, None], [None, None]]
  for qh in range(2):
    for qw in range(2):
      cols = [_karatsuba_outputs([p[3 * uh + uw][:, :, :, qh, qw] for uw in range(3)], qw, 2)
              for uh in range(3)]  # cols[u_h][R_w]: [n, J_h, J_w, c]
      rows = [_karatsuba_outputs([cols[uh][rw] for uh in range(3)], qh, 1) for rw in range(2)]
      # act before the interleave: XLA:CPU then fuses it into the interleave's one pass.
      planes[qh][qw] = _interleave([[act(rows[rw][rh] + bias) for rw in range(2)]
                                    for rh in range(2)])  # pixels 2J + R
  return planes


# Winograd F(2, 2) form of a stride-2 k4 p1 convolution (the encoders).
# Per axis, on the pairs D[j] = (xp[2j], xp[2j + 1]) of the 1-padded input, y[o] = g0 D[o] +
# g1 D[o + 1] with g0 = (w0, w1), g1 = (w2, w3): a 2-tap correlation. Two outputs from
# (d0, d1, d2) = D[2t .. 2t + 2] take 3 products: m0 = g0 (d0 - d1), m1 = (g0 + g1) d1,
# m2 = g1 (d2 - d1); y[2t] = m0 + m1, y[2t + 1] = m1 + m2.
def _winograd_kernel(kernel):
  """kernel [4, 4, C_in, C_out] -> [9, 4 C_in, C_out]: products (m_h, m_w), rows (r_h, r_w, c)."""
  g = np.zeros((3, 2, 4), np.float32)  # [product, pair position r, tap]
  for r in range(2):
    g[0, r, r] = g[1, r, r] = g[1, r, 2 + r] = g[2, r, 2 + r] = 1.0
  out = jnp.einsum("ark,bsl,klio->abrsio", g, g, kernel, precision=jax.lax.Precision.HIGHEST)
  return out.reshape(9, 4 * kernel.shape[2], kernel.shape[3])


def _winograd_conv(x, kernel):
  """Conv k4 s2 p1 (no bias) in the Winograd form: x [n, h, w, C_in], h and w multiples of 4 ->
  [n, h/2, w/2, C_out]."""
  n, h, w, c = x.shape
  th, tw = h // 4, w // 4
  d = _pad1(x, "constant").reshape(n, h // 2 + 1, 2, w // 2 + 1, 2, c)
  d = d.transpose(0, 1, 3, 2, 4, 5).reshape(n, h // 2 + 1, w // 2 + 1, 4 * c)  # Pairs D.
  window = lambda a, b: d[:, a:a + 2 * th - 1:2, b:b + 2 * tw - 1:2]  # D[2t + a, 2t' + b]
  transform = lambda d0, d1, d2: (d0 - d1, d1, d2 - d1)
  rows_t = [transform(*(window(a, b) for a in range(3))) for b in range(3)]  # [b][m_h]: rows ...
  v = jnp.stack([t for ds in zip(*rows_t) for t in transform(*ds)])  # ... then columns.
  m = jnp.einsum("utc,ucd->utd", v.reshape(9, -1, 4 * c), kernel).reshape(3, 3, n, th, tw, -1)
  rows = (m[0] + m[1], m[1] + m[2])  # y rows 2t, 2t + 1
  return _interleave([[r[0] + r[1], r[1] + r[2]] for r in rows])


def _leaky(x, slope):
  return jnp.where(x >= 0, x, slope * x)


# ---------------------------------------------------------------------------- prepare


def _conv_bn_params(p, s, name, eps):
  return _fold_bn(p[name]["conv"]["kernel"], p[name]["conv"]["bias"], p[name]["bn"], s[name]["bn"],
                  eps)


def _convt_kernel(flax_kernel):
  """flax ConvTranspose(transpose_kernel=True) kernel [k, k, C_out, C_in] -> torch taps [k, k, C_in, C_out]."""
  return jnp.swapaxes(flax_kernel, 2, 3)


def _heads(p, name_mu, name_var, c, h, w, nchw: bool):
  """fc_mu and fc_var as one [h*w*c, 2L] matmul on the NHWC-flattened features."""
  k = jnp.concatenate([p[name_mu]["kernel"], p[name_var]["kernel"]], axis=1)
  if nchw:  # Rows in (c, h, w) order -> (h, w, c).
    k = k.reshape(c, h, w, -1).transpose(1, 2, 0, 3).reshape(c * h * w, -1)
  return k, jnp.concatenate([p[name_mu]["bias"], p[name_var]["bias"]])


def _dense1(fc_kernel, fc_bias, block, c, h, w, nchw: bool):
  """fc (latent -> c*h*w) followed by an affine block (no bias) + bias -> one (kernel, bias)."""
  block_fn, block_bias = block

  def unflatten(v):
    v = v.reshape(v.shape[0], c, h, w).transpose(0, 2, 3, 1) if nchw else v.reshape(-1, h, w, c)
    return block_fn(v)

  with jax.default_matmul_precision("highest"):
    kernel = unflatten(fc_kernel)
    bias = unflatten(fc_bias[None])[0] + block_bias
  return kernel.reshape(fc_kernel.shape[0], -1), bias.reshape(-1)


def _winograd_convs(convs):
  """Encoder [(kernel, bias)] -> the same convs in Winograd form."""
  return [(_winograd_kernel(k), b) for k, b in convs]


def _prepare_vanilla(model, v):
  p = v["params"]
  enc = [(p[f"encoder_{i}"]["kernel"], p[f"encoder_{i}"]["bias"]) for i in range(4)]
  enc = _winograd_convs(enc)
  dec = [(_convt_kernel(p[f"decoder_{i}"]["kernel"]), p[f"decoder_{i}"]["bias"]) for i in range(4)]
  k0, b0 = dec[0]
  dense = _dense1(p["decoder_input"]["kernel"], p["decoder_input"]["bias"],
                  (lambda x: _phase_up(x, _phase_kernel(k0, _CONVT4_TAPS), "constant", 1), b0),
                  256, 4, 4, nchw=True)

  def tile_planar(a):  # Columns (h, w, c) of the 8x8x128 map -> (h % 2, w % 2, h / 2, w / 2, c).
    k = a.ndim - 1
    return a.reshape(*a.shape[:-1], 4, 2, 4, 2, 128).transpose(
        *range(k), k + 1, k + 3, k, k + 2, k + 4).reshape(a.shape)

  return Prepared(encoder={"convs": enc, "heads": _heads(p, "fc_mu", "fc_logvar", 256, 4, 4, True)},
                  decoder={"dense": tuple(map(tile_planar, dense)),
                           "ups": [(tuple(_pad_columns(_karatsuba_kernel(k))), b)
                                   for k, b in dec[1:]]})


def _pad_columns(kernel, multiple: int = 16):
  """Zero columns up to a multiple of 16 (the last layer's 12: its matmuls 1.2x faster with 16)."""
  return jnp.pad(kernel, ((0, 0), (0, 0), (0, -kernel.shape[-1] % multiple)))


def _prepare_betavae(model, v):
  p, s = v["params"], v["batch_stats"]
  enc = [_conv_bn_params(p, s, f"encoder_{i}", layers.TORCH_BN_EPS) for i in range(4)]
  dec = []
  for i in range(4):
    d = p[f"decoder_{i}"]
    k, b = _fold_bn(_convt_kernel(d["conv"]["kernel"]), d["conv"]["bias"], d["bn"],
                    s[f"decoder_{i}"]["bn"], layers.TORCH_BN_EPS)
    dec.append((_phase_kernel(k, _CONVT4_TAPS), b))
  k0, b0 = dec[0]
  dense = _dense1(p["fc_z"]["kernel"], p["fc_z"]["bias"],
                  (lambda x: _phase_up(x, k0, "constant", 0), b0), 64, 2, 2, nchw=True)
  return Prepared(encoder={"convs": enc, "heads": _heads(p, "fc_mu", "fc_var", 64, 2, 2, True)},
                  decoder={"dense": dense, "ups": [(_scatter_kernel(k), b) for k, b in dec[1:]]})


def _prepare_dfcvae(model, v):
  p, s = v["params"], v["batch_stats"]
  enc = [_conv_bn_params(p, s, f"e{i}", layers.TORCH_BN_EPS) for i in range(1, 5)]
  enc = _winograd_convs(enc)
  dec = []
  for i in range(1, 5):
    k, b = _conv_bn_params(p, s, f"d{i}", layers.TORCH_BN_EPS)
    dec.append((_phase_kernel(k, _UP3_TAPS), b))
  k0, b0 = dec[0]
  dense = _dense1(p["fc_z"]["kernel"], p["fc_z"]["bias"],
                  (lambda x: _phase_up(x, k0, "edge", 1), b0), 256, 4, 4, nchw=True)
  return Prepared(encoder={"convs": enc, "heads": _heads(p, "fc_mu", "fc_var", 256, 4, 4, True)},
                  decoder={"dense": dense, "ups": dec[1:]})


def _prepare_pvae(model, v):
  p, s = v["params"], v["batch_stats"]
  enc = [_conv_bn_params(p, s, f"encoder_{i}", layers.KERAS_BN_EPS) for i in range(4)]
  enc = _winograd_convs(enc)
  dec = []
  for i in range(3):
    k, b = _conv_bn_params(p, s, f"decoder_{i}", layers.KERAS_BN_EPS)
    dec.append((_phase_kernel(k, _UP3_TAPS), b))
  out = p["decoder_out"]
  dec.append((_phase_kernel(out["kernel"], _UP3_TAPS), out["bias"]))
  return Prepared(
      encoder={"convs": enc, "heads": _heads(p, "z_mean", "z_log_var", 256, 4, 4, False)},
      decoder={"dense": (p["decoder_dense"]["kernel"], p["decoder_dense"]["bias"]),
               "ups": [(_scatter_kernel(k), b) for k, b in dec]})


_PREPARE = {models.VanillaVAE: _prepare_vanilla, models.BetaVAE: _prepare_betavae,
            models.DFCVAE: _prepare_dfcvae, models.PVAE: _prepare_pvae}


def prepare(model: nn.Module, variables) -> Prepared:
  """Folds BatchNorm, builds the phase kernels and the dense1 layer. Idempotent, jittable."""
  if isinstance(variables, Prepared):
    return variables
  fn = _PREPARE.get(type(model))
  if fn is None:
    raise ValueError(f"no fast path for {type(model).__name__}")
  return fn(model, variables)


prepare_jit = jax.jit(prepare, static_argnums=0)


def model_name(model: nn.Module) -> str:
  """The registry name (jaxvae.models.MODELS) of a model instance."""
  for name, info in models.MODELS.items():
    if type(model) is info.module:
      return name
  raise ValueError(f"unknown model {type(model).__name__}")


def default_chunk_size(model: nn.Module, backend: str | None = None) -> int:
  """Images per encode/decode step for `model` on `backend` (jaxvae.schedule's table)."""
  return schedule.default_chunk_size(backend or jax.default_backend(), model_name(model))


# ---------------------------------------------------------------------------- encode / decode


def map_chunks(fn, x: jax.Array, chunk_size: int):
  """fn over the leading axis of x in chunks with lax.map; padding is sliced off again."""
  n = x.shape[0]
  if chunk_size <= 0 or chunk_size >= n:
    return fn(x)
  pad = -n % chunk_size
  xs = jnp.concatenate([x, jnp.zeros((pad, *x.shape[1:]), x.dtype)]) if pad else x
  out = jax.lax.map(fn, xs.reshape(-1, chunk_size, *x.shape[1:]))
  return jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:])[:n], out)


def _encoder_act(model: nn.Module):
  """The activation of the encoder's convolutions."""
  if isinstance(model, models.VanillaVAE | models.BetaVAE):
    return nn.relu
  if isinstance(model, models.DFCVAE):
    return functools.partial(_leaky, slope=layers.TORCH_LEAKY_SLOPE)
  return functools.partial(_leaky, slope=layers.KERAS_LEAKY_SLOPE)  # PVAE


def _encode_convs(model: nn.Module, params: Prepared, x: jax.Array) -> jax.Array:
  """x [B, 64, 64, 3] -> the flattened features the heads read, [B, F]."""
  act = _encoder_act(model)
  for kernel, bias in params.encoder["convs"]:
    if kernel.ndim == 3:  # Winograd form, padding 1 inside (Vanilla, DFC-VAE, PVAE).
      x = act(_winograd_conv(x, kernel) + bias)
    else:  # Beta-VAE: unpadded stride-2 conv.
      x = act(_conv(x, kernel, 2) + bias)
  return x.reshape(x.shape[0], -1)


def encode(model: nn.Module, params, x: jax.Array,
           chunk_size: int = 0) -> tuple[jax.Array, jax.Array]:
  """x [B, 64, 64, 3] in the model's input range -> (mean, logvar), each [B, L].

  The convolutions run in chunks of `chunk_size` images (0: all at once); the heads run once on
  the whole batch, so their weights are read once.
  """
  params = prepare(model, params)
  feats = map_chunks(lambda c: _encode_convs(model, params, c), x, chunk_size)
  kernel, bias = params.encoder["heads"]
  out = feats @ kernel + bias
  latent = kernel.shape[1] // 2
  return out[:, :latent], out[:, latent:]


def _decode_dense(model: nn.Module, params: Prepared, z: jax.Array) -> jax.Array:
  """z [N, L] -> the input of the up-sampling stack, [N, h, w, c] after its nonlinearity
  (Vanilla: tile-planar, [N, 2, 2, h/2, w/2, c], before its bias and ReLU: those run in the loop,
  fused into the first layer's input transform, 1.2x faster than fused into the dot here)."""
  kernel, bias = params.decoder["dense"]
  if isinstance(model, models.VanillaVAE):  # Bias and ReLU in the loop (_decode_ups).
    return (z @ kernel).reshape(-1, 2, 2, 4, 4, 128)  # [N, row parity, column parity, 4, 4, c]
  x = z @ kernel + bias
  if isinstance(model, models.BetaVAE):
    return nn.relu(x).reshape(-1, 6, 6, 64)
  if isinstance(model, models.DFCVAE):
    return _leaky(x, layers.TORCH_LEAKY_SLOPE).reshape(-1, 8, 8, 128)
  return nn.relu(x).reshape(-1, 4, 4, 256)  # PVAE


def _decode_ups(model: nn.Module, params: Prepared, x: jax.Array) -> jax.Array:
  """The up-sampling stack: [N, h, w, c] -> [N, 64, 64, 3] before the last nonlinearity."""
  ups = params.decoder["ups"]
  if isinstance(model, models.VanillaVAE):
    x = nn.relu(x + params.decoder["dense"][1].reshape(2, 2, 4, 4, 128))
    x = [[x[:, 0, 0], x[:, 0, 1]], [x[:, 1, 0], x[:, 1, 1]]]
    for i, (k, b) in enumerate(ups):
      x = _karatsuba_up(x, k, b, nn.relu if i < len(ups) - 1 else lambda y: y)
    return _interleave(x)  # Tile-planar -> pixels.
  if isinstance(model, models.BetaVAE):
    for (k, b), extra in zip(ups[:-1], (0, 1)):
      x = nn.relu(_scatter_up(x, k, 0, extra) + b)
    k, b = ups[-1]
    return _scatter_up(x, k, 0) + b
  if isinstance(model, models.DFCVAE):
    for k, b in ups[:-1]:
      x = _leaky(_phase_up(x, k, "edge", 1) + b, layers.TORCH_LEAKY_SLOPE)
    k, b = ups[-1]
    return _phase_up(x, k, "edge", 1) + b
  for k, b in ups[:-1]:  # PVAE
    x = _leaky(_scatter_up(x, k, 1) + b, layers.KERAS_LEAKY_SLOPE)
  k, b = ups[-1]
  return _scatter_up(x, k, 1) + b


def _tanh(x):
  """tanh(x) = 2 sigmoid(2x) - 1 (within 4e-7 of jnp.tanh): XLA:CPU's tanh is several times slower."""
  return 2 * nn.sigmoid(2 * x) - 1


def _decode_out(model: nn.Module, y: jax.Array) -> jax.Array:
  """The decoder's last nonlinearity: [N, 64, 64, 3] -> the model's output range."""
  if isinstance(model, models.VanillaVAE | models.PVAE):
    if model.output_activation == "tanh":
      return _tanh(y)
    return layers.output_activation(y, model.output_activation)
  if isinstance(model, models.BetaVAE):
    return nn.sigmoid(nn.relu(y))  # BN -> ReLU -> Sigmoid, as the original.
  return nn.sigmoid(_leaky(y, layers.TORCH_LEAKY_SLOPE))  # DFC-VAE


def decode(model: nn.Module, params, z: jax.Array, chunk_size: int = 0) -> jax.Array:
  """z [N, L] -> [N, 64, 64, 3] in the model's output range.

  The up-sampling stack runs in chunks of `chunk_size` images (0: all at once); the first dense
  layer and the last nonlinearity run once on the whole batch (see "Schedule" above).
  """
  params = prepare(model, params)
  x = _decode_dense(model, params, z)
  y = map_chunks(lambda c: _decode_ups(model, params, c), x, chunk_size)
  return _decode_out(model, y)
