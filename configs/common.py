"""Defaults shared by every model config; each model file overrides what differs.

Layout (validated once, before any work, by jaxvae/options.py):
- Top level: what several modes read. `model` (name and shape-free module fields), `checkpoint`,
  the inputs (`input`, or a CelebA split: `celeba`, `split`), `seed`, `postprocess`,
  `chunk_size`, `batch_size`, and the sampling options that variations, evaluate and generate
  share: `num_variations`, `deterministic`, `temperature`, `input_noise_std`, `sampling_rule`.
- One section per mode for what only that mode reads: `sample`, `interpolate`, `edit`,
  `evaluate`, ... (e.g. `--config.edit.strengths='(0, 1)'`, `--config.evaluate.lpips_net=vgg16`).
"""

import ml_collections


def _none(kind: type):
  """None by default ("as the original"), overridable from the command line as a `kind`."""
  return ml_collections.config_dict.placeholder(kind)


def get_config(model: str, checkpoint: str) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  # Model name and shape-free fields of the module (see jaxvae/models); latent size comes from
  # the checkpoint.
  c.model = ml_collections.ConfigDict({"name": model})
  # An Orbax checkpoint directory (written by `python -m port` or --mode=train's export), or a
  # published name (betavae-l32, betavae-l200, dfcvae-400, vanilla-l200), ported on first use.
  c.checkpoint = checkpoint
  # Comma-separated files, folders and globs; empty = the bundled public-domain portraits.
  c.input = ""
  # Faces in photos (jaxvae/faces): "auto" aligns every photo that is not a 178x218 aligned
  # CelebA image into CelebA's frame (MTCNN landmarks, CelebA's own alignment; several faces
  # become several inputs photo.jpg#1, ...); "celeba" aligns every image; "off" crops as it is.
  c.align = "auto"
  # A CelebA root folder (official layout or CSV variant) or "tfds[:celeb_a]"; read by the modes
  # that take a dataset (evaluate) instead of `input` when set.
  c.celeba = ""
  c.split = "test"
  c.seed = 0  # 0 <= seed < 2**32
  # Post-processing chain for every mode: "" (off), a preset name ("report") or stage list.
  c.postprocess = ""
  c.chunk_size = 0  # Images per compiled step; 0 = the backend's default (jaxvae/chunking.py).
  # Inputs per compiled call in the modes that stream (evaluate, generate); 0 = the backend's
  # default: 64 on the CPU, 1024 on GPUs and TPUs (measured; jaxvae/chunking.py).
  c.batch_size = 0
  # Variations: z = mean + temperature * exp(logvar / 2) * eps; deterministic means z = mean.
  c.num_variations = 10
  c.deterministic = False
  c.temperature = 1.0
  c.input_noise_std = 0.0  # Gaussian noise added to the [0, 1] input before each encode.
  c.sampling_rule = "per_sample"  # or "pvae_shared": one eps of std 0.1 shared by the batch.

  # --mode=sample: faces from the prior N(0, temperature^2 I).
  c.sample = ml_collections.ConfigDict({"num_samples": 16})
  # --mode=interpolate: latent paths between consecutive inputs.
  c.interpolate = ml_collections.ConfigDict({"method": "slerp", "steps": 8})
  # --mode=edit: direction = mean latent of `with_images` - mean latent of `without_images`
  # (input specs), added to each input's latent at each strength. With `attribute` (one of
  # CelebA's 40, e.g. "Smiling") the direction is that attribute's vector over `split` of
  # config.celeba instead (mean mu with - mean mu without; computed once, cached).
  c.edit = ml_collections.ConfigDict({
      "with_images": "bundled:grace_hopper",
      "without_images": "bundled:astronaut",
      "strengths": (0.0, 0.5, 1.0, 1.5),
      "attribute": "",
      "split": "train",
      "max_images": 20000,  # 0 = the whole split
  })
  # --mode=traverse: per input, its `num_dims` latent dimensions with the largest KL (0 = all),
  # decoded at mean + v * std for each v; std "prior" (1) or "posterior" (the input's own).
  c.traverse = ml_collections.ConfigDict({
      "num_dims": 8,
      "values": (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0),
      "std": "prior",
  })
  # --mode=evaluate: `checkpoints` adds models to compare (comma-separated); LPIPS backbone
  # ("alexnet", "vgg16", or "" to skip); bootstrap resamples for the per-attribute intervals;
  # `fid`: FID and KID of the reconstructions and of as many prior samples against the inputs,
  # with pytorch-fid's Inception-v3 (`fid_weights`: published name, downloaded and ported once,
  # or a ported directory). FID needs more than 2048 images for a full-rank covariance.
  # `generated`: a --mode=generate output (its --workdir), scored by FID and KID against the
  # same inputs.
  c.evaluate = ml_collections.ConfigDict({
      "checkpoints": "",
      "max_images": 1000,  # 0 = the whole split
      "lpips_net": "alexnet",
      "bootstrap": 2000,
      "fid": False,
      "fid_weights": "inception-fid",
      "generated": "",
  })
  # --mode=generate: num_variations variations of every source (config.celeba's split, else
  # config.input) streamed into <workdir>/generate/ shards of `shard_size` records ("array_record",
  # images "raw" or "png" inside; or "png" folders + index.csv); resumable. `distributed`: "",
  # "auto" (jax.distributed from the environment) or "HOST:PORT,NUM_PROCESSES,PROCESS_ID".
  c.generate = ml_collections.ConfigDict({
      "shard_size": 10_000,
      "format": "array_record",
      "image_encoding": "raw",
      "save_latents": False,
      "max_images": 0,  # 0 = every source
      "workers": 0,  # reading workers; 0 = one per core
      "reader": "auto",  # "processes", "threads"; auto: processes from 4 workers on
      "distributed": "",
  })
  # --mode=train (jaxvae/train/options.py documents each field; None = as the original trained):
  # `data` a CelebA root, tfds, or files/folders/globs/bundled: names; `init_from` "" (from
  # scratch), a ported or exported checkpoint, or a published name (fine-tuning).
  c.train = ml_collections.ConfigDict({
      "data": "", "validation_data": "", "init_from": "", "latent_dim": 0,
      "steps": 1000, "batch_size": _none(int), "learning_rate": _none(float),
      "beta": _none(float), "alpha": _none(float),
      "loss": "original", "perceptual_net": "vgg19-imagenet", "schedule": "original",
      "plateau_factor": 0.2, "plateau_patience": 2, "plateau_min_delta": 1e-4,
      "shuffle": _none(bool), "flip": False, "balance_attribute": "", "max_images": 0,
      "eval_every": 0, "eval_images": 1000, "checkpoint_every": 500, "keep": 3,
      "log_every": 50, "image_every": 500, "seed": 0, "compute_dtype": "float32",
      "num_threads": 0,
  })
  return c
