r"""python main.py --config=configs/vanilla.py --mode=variations --workdir=out/vanilla

Vanilla VAE (hussamalafandi/VAE-CelebA), latent 200, inputs and outputs in [-1, 1].
`configs/vanilla.py:report` reproduces the evaluation report's mismatched setup: Sigmoid output
and [0, 1] inputs.
"""

from configs import common


def get_config(arg: str = ""):
  c = common.get_config("vanilla", "vanilla-l200")
  c.model.output_activation = "tanh"
  c.model.input_range = (-1.0, 1.0)
  c.model.output_range = (-1.0, 1.0)
  if arg == "report":
    c.model.output_activation = "sigmoid"
    c.model.input_range = (0.0, 1.0)
    c.model.output_range = (0.0, 1.0)
  elif arg:
    raise ValueError(f"configs/vanilla.py:{arg}: the only variant is :report")
  return c
