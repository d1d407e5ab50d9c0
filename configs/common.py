"""Defaults shared by every model config; each model file overrides what differs."""

import ml_collections


def get_config(model: str, checkpoint: str) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  # Model name and shape-free fields of the module (see jaxvae/models); latent size comes from
  # the checkpoint.
  c.model = ml_collections.ConfigDict({"name": model})
  # An Orbax checkpoint directory written by `python -m port`, or a published name
  # (betavae-l32, betavae-l200, dfcvae-400, vanilla-l200) that is ported on first use and cached.
  c.checkpoint = checkpoint
  # Comma-separated files, folders and globs; empty = the bundled public-domain portraits.
  c.input = ""
  c.seed = 0
  # Variations: z = mean + temperature * exp(logvar / 2) * eps; deterministic means z = mean.
  c.num_variations = 10
  c.deterministic = False
  c.temperature = 1.0
  c.input_noise_std = 0.0  # Gaussian noise added to the [0, 1] input before each encode.
  c.sampling_rule = "per_sample"  # or "pvae_shared": one eps of std 0.1 shared by the batch.
  c.chunk_size = 0  # Images per compiled decode step; 0 = the backend's default.
  # Post-processing chain for every mode: "" (off), a preset name ("report") or stage list.
  c.postprocess = ""
  # sample
  c.num_samples = 16
  # interpolate: consecutive input pairs.
  c.interpolation = "slerp"  # or "linear"
  c.interpolation_steps = 8
  # edit: direction = mean latent of edit_with - mean latent of edit_without (input specs).
  c.edit_with = "bundled:grace_hopper"
  c.edit_without = "bundled:astronaut"
  c.edit_strengths = (0.0, 0.5, 1.0, 1.5)
  # evaluate: CelebA root folder (official layout or CSV variant) or "tfds[:celeb_a]"; empty =
  # config.input without attributes. evaluate_checkpoints adds models to compare (comma-separated).
  c.celeba = ""
  c.split = "test"
  c.max_images = 1000  # 0 = the whole split
  c.batch_size = 64
  c.evaluate_checkpoints = ""
  c.lpips_net = "alexnet"  # "vgg16", or "" to skip LPIPS
  c.bootstrap = 2000  # resamples for the per-attribute confidence intervals
  return c
