"""Training and fine-tuning of the four VAEs with the originals' losses and optimizers.

`train_and_evaluate(TrainOptions.from_config(config.train), workdir)` runs a whole training;
`step` holds the jitted training step, `losses` and `optim` the originals' losses and optimizers.
The loop is imported on first use, so that `jaxvae.train.step` alone stays light.
"""

_LOOP = ("Result", "TrainingInterrupted", "train_and_evaluate")
_OPTIONS = ("OptionsError", "TrainOptions")


def __getattr__(name: str):
  if name in _LOOP:
    from jaxvae.train import loop  # pylint: disable=import-outside-toplevel
    return getattr(loop, name)
  if name in _OPTIONS:
    from jaxvae.train import options  # pylint: disable=import-outside-toplevel
    return getattr(options, name)
  raise AttributeError(f"module 'jaxvae.train' has no attribute {name!r}")


def __dir__():
  return sorted(list(globals()) + list(_LOOP) + list(_OPTIONS))


__all__ = list(_LOOP + _OPTIONS)
