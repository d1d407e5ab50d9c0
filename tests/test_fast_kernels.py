"""Each fast-path kernel against lax.conv_general_dilated / lax.conv_transpose on random shapes.

The references are the plain layers (nearest 2x upsample + pad + 3x3 conv, torch-style transposed
convs, stride-2 convs, conv + inference BatchNorm) written with lax directly. Shapes (batch,
spatial size, channels) are drawn at random per case; jit and no-jit variants via chex.
Tolerance: 1e-5 absolute on outputs of order 1 (fp32; the rewrites sum the same products in
another order), matmuls at HIGHEST precision so accelerators compare in fp32 too.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import parameterized

from jaxvae.fast import kernels, products

TOL = 1e-5
SEEDS = [(s,) for s in range(3)]
HI = jax.lax.Precision.HIGHEST


def _conv(x, k, stride, pad):
  return jax.lax.conv_general_dilated(x, k, (stride, stride), ((pad, pad), (pad, pad)),
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=HI)


def _conv_transpose(x, torch_taps, pad, output_padding=0):
  """torch ConvTranspose2d(k, stride 2, pad, output_padding) with weight taps [k, k, C_in, C_out]."""
  k = torch_taps.shape[0]
  lo, hi = k - 1 - pad, k - 1 - pad + output_padding
  return jax.lax.conv_transpose(x, jnp.swapaxes(torch_taps, 2, 3), (2, 2), ((lo, hi), (lo, hi)),
                                dimension_numbers=("NHWC", "HWIO", "NHWC"), transpose_kernel=True,
                                precision=HI)


def _up2(x):
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def _case(seed, spatial=(2, 3, 4, 5), even=False):
  rng = np.random.default_rng(seed)
  n = int(rng.integers(1, 4))
  side = int(rng.choice([s for s in spatial if not even or s % 4 == 0] or [4, 8]))
  c_in, c_out = int(rng.integers(1, 6)), int(rng.integers(1, 6))
  return rng, n, side, c_in, c_out


def _arr(rng, *shape):
  return jnp.asarray(rng.standard_normal(shape, dtype=np.float32))


class KernelsTest(chex.TestCase, parameterized.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(*SEEDS)
  def test_window_phase_up_is_upsample_edge_pad_conv3(self, seed):
    rng, n, side, c_in, c_out = _case(seed)
    x, k = _arr(rng, n, side, side, c_in), _arr(rng, 3, 3, c_in, c_out)
    want = _conv(kernels.pad1(_up2(x), "edge"), k, 1, 0)
    phase = kernels.phase_kernel(k, kernels.UP3_TAPS)
    got = self.variant(lambda x: kernels.phase_up(x, phase, "edge", 1))(x)
    chex.assert_shape(got, (n, 2 * side, 2 * side, c_out))
    chex.assert_trees_all_close(got, want, atol=TOL)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(*SEEDS)
  def test_scatter_up_is_upsample_zero_pad_conv3(self, seed):
    rng, n, side, c_in, c_out = _case(seed + 10)
    x, k = _arr(rng, n, side, side, c_in), _arr(rng, 3, 3, c_in, c_out)
    want = _conv(_up2(x), k, 1, 1)
    scatter = kernels.scatter_kernel(kernels.phase_kernel(k, kernels.UP3_TAPS))
    got = self.variant(lambda x: kernels.scatter_up(x, scatter, 1))(x)
    chex.assert_trees_all_close(got, want, atol=TOL)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters((0, 0), (0, 1), (1, 0))
  def test_scatter_up_is_transposed_conv_k4_s2(self, pad, output_padding):
    rng, n, side, c_in, c_out = _case(20 + 2 * pad + output_padding)
    x, taps = _arr(rng, n, side, side, c_in), _arr(rng, 4, 4, c_in, c_out)
    want = _conv_transpose(x, taps, pad, output_padding)
    scatter = kernels.scatter_kernel(kernels.phase_kernel(taps, kernels.CONVT4_TAPS))
    got = self.variant(lambda x: kernels.scatter_up(x, scatter, pad, output_padding))(x)
    chex.assert_trees_all_close(got, want, atol=TOL)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(*SEEDS)
  def test_karatsuba_up_is_transposed_conv_k4_s2_p1(self, seed):
    rng, n, side, c_in, c_out = _case(seed + 30)
    x, taps, bias = _arr(rng, n, 2 * side, 2 * side, c_in), _arr(rng, 4, 4, c_in, c_out), _arr(
        rng, c_out)
    want = _conv_transpose(x, taps, 1) + bias
    planes = [[x[:, r::2, c::2] for c in range(2)] for r in range(2)]  # tile-planar input
    k = tuple(products.pad_columns(products.karatsuba_kernel(taps)))
    got = self.variant(lambda p: kernels.interleave(products.karatsuba_up(p, k, bias,
                                                                          lambda y: y)))(planes)
    chex.assert_shape(got, (n, 4 * side, 4 * side, c_out))
    chex.assert_trees_all_close(got, want, atol=TOL)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(*SEEDS)
  def test_winograd_conv_is_conv_k4_s2_p1(self, seed):
    rng, n, _, c_in, c_out = _case(seed + 40)
    side = 4 * int(rng.integers(1, 4))
    x, k = _arr(rng, n, side, side, c_in), _arr(rng, 4, 4, c_in, c_out)
    got = self.variant(lambda x: products.winograd_conv(x, products.winograd_kernel(k)))(x)
    chex.assert_trees_all_close(got, _conv(x, k, 2, 1), atol=TOL)

  @parameterized.parameters(*SEEDS)
  def test_fold_bn_is_conv_then_inference_batchnorm(self, seed):
    rng, n, side, c_in, c_out = _case(seed + 50)
    x, k, b = _arr(rng, n, side, side, c_in), _arr(rng, 3, 3, c_in, c_out), _arr(rng, c_out)
    bn = {"scale": _arr(rng, c_out), "bias": _arr(rng, c_out)}
    stats = {"mean": _arr(rng, c_out), "var": jnp.abs(_arr(rng, c_out)) + 0.5}
    y = _conv(x, k, 1, 1) + b
    want = (y - stats["mean"]) / jnp.sqrt(stats["var"] + 1e-5) * bn["scale"] + bn["bias"]
    fk, fb = kernels.fold_bn(k, b, bn, stats, 1e-5)
    chex.assert_trees_all_close(_conv(x, fk, 1, 1) + fb, want, atol=TOL)

  @parameterized.parameters(*SEEDS)
  def test_heads_fold_the_nchw_flatten(self, seed):
    rng, n, side, c, latent = _case(seed + 60)
    feats = _arr(rng, n, side, side, c)
    p = {name: {"kernel": _arr(rng, side * side * c, latent), "bias": _arr(rng, latent)}
         for name in ("mu", "var")}
    nchw = feats.transpose(0, 3, 1, 2).reshape(n, -1)  # torch's flatten
    kernel, bias = kernels.heads(p, "mu", "var", c, nchw=True)
    got = jnp.matmul(feats.reshape(n, -1), kernel, precision=HI) + bias
    want = jnp.concatenate([jnp.matmul(nchw, p[m]["kernel"], precision=HI) + p[m]["bias"]
                            for m in ("mu", "var")], axis=1)
    chex.assert_trees_all_close(got, want, atol=TOL)

  @parameterized.parameters(*SEEDS)
  def test_dense1_is_linear_then_affine_block(self, seed):
    rng, n, side, c, c_out = _case(seed + 70)
    latent = int(rng.integers(1, 9))
    fc_k, fc_b = _arr(rng, latent, c * side * side), _arr(rng, c * side * side)
    conv_k, conv_b = _arr(rng, 3, 3, c, c_out), _arr(rng, c_out)
    z = _arr(rng, n, latent)
    maps = (jnp.matmul(z, fc_k, precision=HI) + fc_b).reshape(n, c, side, side).transpose(0, 2, 3, 1)
    want = _conv(kernels.pad1(_up2(maps), "edge"), conv_k, 1, 0) + conv_b
    phase = kernels.phase_kernel(conv_k, kernels.UP3_TAPS)
    kernel, bias, shape = kernels.dense1(fc_k, fc_b, lambda v: kernels.phase_up(v, phase, "edge", 1),
                                         conv_b, c, nchw=True)
    self.assertEqual(shape, (2 * side, 2 * side, c_out))
    got = (jnp.matmul(z, kernel, precision=HI) + bias).reshape(n, *shape)
    chex.assert_trees_all_close(got, want, atol=TOL)
