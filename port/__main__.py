r"""Converts a published checkpoint into a jaxvae Orbax checkpoint.

  python -m port --model=betavae --source=betavae-l200 --out=ckpt/betavae-l200 --verify
  python -m port --model=betavae --source=path/to/100.pt --out=DIR [--force]
  python -m port --model=pvae --source=pvae.weights.h5 --out=DIR --verify
  python -m port --source=mtcnn --out=DIR --verify          # face detection (facenet-pytorch wheel)
  python -m port --source=inception-fid --out=DIR --verify  # FID's Inception-v3
  python -m port --source=vgg19-imagenet --out=DIR --verify # DFC-VAE perceptual loss

--source is a published name, an http(s)/file URL, or a local .pt/.pth/.safetensors file; for
pvae, Keras weights: .weights.h5 or .keras (Keras 3), .h5 (Keras 2 save_weights or model.save),
or a TensorFlow SavedModel / checkpoint directory (needs TensorFlow).
"""

import sys

from absl import app, flags, logging

from port import api

_MODEL = flags.DEFINE_string("model", None, "What the source holds: a VAE (vanilla, betavae, "
                             "dfcvae, pvae) or an auxiliary network (inception: FID; vgg19: the "
                             "DFC-VAE perceptual loss; mtcnn: face detection).")
_SOURCE = flags.DEFINE_string("source", None,
                              "Published name, URL, or local checkpoint file.")
_OUT = flags.DEFINE_string("out", None, "Output directory of the Orbax checkpoint.")
_VERIFY = flags.DEFINE_bool("verify", False,
                            "Compare the port with the original framework's forward pass.")
_FORCE = flags.DEFINE_bool("force", False, "Overwrite an existing output directory.")


def main(argv):
  logging.set_verbosity(logging.WARNING)  # Orbax logs every step at INFO.
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  for flag in (_SOURCE, _OUT):
    if not flag.value:
      raise app.UsageError(f"--{flag.name} is required")
  try:
    result = api.port(_MODEL.value, _SOURCE.value, _OUT.value, check_parity=_VERIFY.value,
                      force=_FORCE.value, log=print)
  except api.PORT_ERRORS as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  if result.diffs and not result.verified:
    print(f"error: parity above {api.TOLERANCE:g}; the checkpoint was not written",
          file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  app.run(main)
