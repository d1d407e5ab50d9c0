"""Batch generation at dataset scale: K variations of every source image, streamed into shards.

    import jaxvae, jaxvae.generate, jaxvae.generated
    vae = jaxvae.pretrained("betavae-l200")
    jaxvae.generate.generate(vae, "faces/", "out/gen", num_variations=10, seed=0)
    records = jaxvae.generated.open("out/gen")     # a grain data source

`source` is an input spec (files, folders, globs), an opened `jaxvae.celeba.CelebA` split, or
`jaxvae.generate.sources.Sources`. Output, under `<workdir>/generate/`: ArrayRecord shards (or PNG
folders) and `manifest.json` (config, checkpoint digests, each shard's records and sha256, skipped
inputs). A shard holds shard_size // K sources (all K variations of each), rounded down to whole
batches when it holds at least one, so that only a dataset's last batch is padded. The record
encoding is documented in jaxvae.generated, the keys in jaxvae.generate.keys: a record depends
only on the config and its source, so a rerun, a resumed run and a run split over processes write
the same shards. Shard i goes to the process with i % process_count == process_index
(jax.distributed), on its own local devices. An interrupted run resumes from its committed shards
when started again with the same config; another config on the same folder is refused, naming
the differences.
"""

import importlib

__all__ = ["generate", "source_keys", "Settings", "Sources"]
_HOMES = {"generate": "run", "Settings": "run", "source_keys": "keys", "Sources": "sources"}


def __getattr__(name: str):
  """The public names, imported on first use: the reading processes of a run import this
  package's `sources` and `readers` and should not pay for jax."""
  if name not in _HOMES:
    raise AttributeError(f"module 'jaxvae.generate' has no attribute {name!r}")
  return getattr(importlib.import_module(f"jaxvae.generate.{_HOMES[name]}"), name)
