"""Karatsuba and Winograd forms of the stride-2 k4 p1 (transposed) convolutions: fewer products.

- Karatsuba (the Vanilla VAE's transposed convs, its whole decoder). Along one axis, output phase
  q (output 2m + q) is a 2-tap filter (a, b) of the input; on the input's aligned pairs (x0, x1)
  it is a 2-tap x 2-point linear convolution (a x0, b x0 + a x1, b x1), i.e. Karatsuba:
  p0 = a x0, p1 = b x1, p2 = (a + b)(x0 + x1), middle = p2 - p0 - p1, with overlap-add between
  neighbouring pairs. In 2D: 3 x 3 products per 2 x 2 input tile instead of 4 x 4: nine matmuls
  [tiles, C_in] @ [C_in, 4 C_out] with 9/16 of the direct FLOPs. A layer's phase-q outputs at
  position m (pixel 2m + q) are the next layer's input pair m at position q, so activations stay
  "tile-planar" (four planes [n, h/2, w/2, C], one per pixel parity (row, column)) and pixels
  are interleaved only once, in the image.
- Winograd F(2, 2) (the encoders' stride-2 k4 p1 convs of the Vanilla VAE, DFC-VAE and PVAE): on
  the space-to-depth pairs of the padded input such a conv is a 2-tap correlation, and two
  outputs take 3 products instead of 4 per axis: a batched matmul [9, tiles, 4 C_in] @
  [9, 4 C_in, C_out] with 9/16 of the products.
"""

import jax
import jax.numpy as jnp
import numpy as np

from jaxvae.fast import kernels

# Karatsuba form of ConvT k4 s2 p1 (Vanilla VAE). Per axis, output phase q is the 2-tap filter
# (a, b) = torch taps KARATSUBA_TAPS[q] on the input pairs (x0, x1) = (x[2j], x[2j + 1]);
# products u = 0, 1, 2 are a x0, b x1, (a + b)(x0 + x1).
KARATSUBA_TAPS = ((1, 3), (0, 2))


def karatsuba_kernel(kernel):
  """kernel [4, 4, C_in, C_out] (torch taps) -> [9, C_in, 4 C_out]: products (u_h, u_w), channels
  (q_h, q_w, c)."""
  g = np.zeros((2, 3, 4), np.float32)  # [phase q, product u, torch tap]
  for q, (a, b) in enumerate(KARATSUBA_TAPS):
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


def karatsuba_up(x, kernel, bias, act):
  """ConvT k4 s2 p1 on a tile-planar map: x[r][c] [n, h, w, C_in] is pixel (2i + r, 2j + c) at
  [:, i, j] -> act(y + bias) in the same form, planes [n, 2h, 2w, C_out]. kernel: the nine
  [C_in, 4 C_out (+ zero columns)] of karatsuba_kernel."""
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
      planes[qh][qw] = kernels.interleave([[act(rows[rw][rh] + bias) for rw in range(2)]
                                           for rh in range(2)])  # pixels 2J + R
  return planes


# Winograd F(2, 2) form of a stride-2 k4 p1 convolution (the encoders).
# Per axis, on the pairs D[j] = (xp[2j], xp[2j + 1]) of the 1-padded input, y[o] = g0 D[o] +
# g1 D[o + 1] with g0 = (w0, w1), g1 = (w2, w3): a 2-tap correlation. Two outputs from
# (d0, d1, d2) = D[2t .. 2t + 2] take 3 products: m0 = g0 (d0 - d1), m1 = (g0 + g1) d1,
# m2 = g1 (d2 - d1); y[2t] = m0 + m1, y[2t + 1] = m1 + m2.
def winograd_kernel(kernel):
  """kernel [4, 4, C_in, C_out] -> [9, 4 C_in, C_out]: products (m_h, m_w), rows (r_h, r_w, c)."""
  g = np.zeros((3, 2, 4), np.float32)  # [product, pair position r, tap]
  for r in range(2):
    g[0, r, r] = g[1, r, r] = g[1, r, 2 + r] = g[2, r, 2 + r] = 1.0
  out = jnp.einsum("ark,bsl,klio->abrsio", g, g, kernel, precision=jax.lax.Precision.HIGHEST)
  return out.reshape(9, 4 * kernel.shape[2], kernel.shape[3])


def winograd_conv(x, kernel):
  """Conv k4 s2 p1 (no bias) in the Winograd form: x [n, h, w, C_in], h and w multiples of 4 ->
  [n, h/2, w/2, C_out]."""
  n, h, w, c = x.shape
  th, tw = h // 4, w // 4
  d = kernels.pad1(x, "constant").reshape(n, h // 2 + 1, 2, w // 2 + 1, 2, c)
  d = d.transpose(0, 1, 3, 2, 4, 5).reshape(n, h // 2 + 1, w // 2 + 1, 4 * c)  # Pairs D.
  window = lambda a, b: d[:, a:a + 2 * th - 1:2, b:b + 2 * tw - 1:2]  # D[2t + a, 2t' + b]
  transform = lambda d0, d1, d2: (d0 - d1, d1, d2 - d1)
  rows_t = [transform(*(window(a, b) for a in range(3))) for b in range(3)]  # [b][m_h]: rows ...
  v = jnp.stack([t for ds in zip(*rows_t) for t in transform(*ds)])  # ... then columns.
  m = jnp.einsum("utc,ucd->utd", v.reshape(9, -1, 4 * c), kernel).reshape(3, 3, n, th, tw, -1)
  rows = (m[0] + m[1], m[1] + m[2])  # y rows 2t, 2t + 1
  return kernels.interleave([[r[0] + r[1], r[1] + r[2]] for r in rows])


def pad_columns(kernel, multiple: int = 16):
  """Zero columns up to a multiple of 16 (the Vanilla VAE's last layer's 12: its matmuls are 1.2x
  faster with 16; karatsuba_up slices them off)."""
  return jnp.pad(kernel, ((0, 0), (0, 0), (0, -kernel.shape[-1] % multiple)))
