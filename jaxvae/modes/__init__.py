"""One function per `main.py --mode`: name -> where it lives (imported when run).

Every mode takes (run: jaxvae.options.Run, workdir, overwrite) and returns its summary entry.
The list of names is jaxvae.options.MODES; tests/test_architecture.py checks both agree.
"""

import importlib
from typing import Callable

MODES: dict[str, str] = {
    "reconstruct": "jaxvae.modes.inference:reconstruct",
    "variations": "jaxvae.modes.inference:variations",
    "sample": "jaxvae.modes.inference:sample",
    "interpolate": "jaxvae.modes.inference:interpolate",
    "edit": "jaxvae.modes.inference:edit",
    "enhance": "jaxvae.modes.enhance:enhance",
    "evaluate": "jaxvae.evaluate:evaluate",
    "generate": "jaxvae.generate.mode:generate",
    "traverse": "jaxvae.modes.traverse:traverse",
    "train": "jaxvae.modes.train:train",
}


def get(mode: str) -> Callable:
  """The function of `mode`."""
  module, name = MODES[mode].split(":")
  return getattr(importlib.import_module(module), name)
