"""The random key of each generated record, from (seed, source id, variation index) alone.

    image key  = fold_in(fold_in(fold_in(fold_in(key(seed), w0), w1), w2), w3), where w0..w3 are
                 the first 16 bytes of sha256(source id, UTF-8) read as 4 big-endian uint32;
    record key = fold_in(image key, variation)  (jaxvae.sampling.keyed_variations does this step),
    input noise from split(record key)[0], eps from split(record key)[1].

128 bits of the id's hash go in, so two ids of a dataset share a key with probability ~N^2/2^129.
"""

import hashlib
from typing import Sequence

import jax
import numpy as np

DESCRIPTION = __doc__.split("\n\n")[1].strip()


def source_words(ids: Sequence[str]) -> np.ndarray:
  """[N, 4] uint32: the first 16 bytes of sha256 of each id, big-endian words."""
  return np.frombuffer(b"".join(hashlib.sha256(i.encode()).digest()[:16] for i in ids),
                       ">u4").astype(np.uint32).reshape(len(ids), 4)


@jax.jit
def _fold(seed_key: jax.Array, words: jax.Array) -> jax.Array:
  def one(w):
    key = seed_key
    for j in range(4):
      key = jax.random.fold_in(key, w[j])
    return key
  return jax.vmap(one)(words)


def source_keys(seed: int, ids: Sequence[str]) -> jax.Array:
  """The image keys of `ids`: [N] typed keys (pass them as `keys=` to the engine)."""
  return _fold(jax.random.key(int(seed)), source_words(ids))
