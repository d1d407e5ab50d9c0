r"""python main.py --config=configs/betavae.py --mode=variations --workdir=out/betavae

Beta-VAE (matthew-liu/beta-vae), latent 200 by default; `configs/betavae.py:l32` selects the
latent-32 checkpoint.
"""

from configs import common

CHECKPOINTS = {"l200": "betavae-l200", "l32": "betavae-l32"}


def get_config(arg: str = "l200"):
  if arg not in CHECKPOINTS:
    raise ValueError(f"configs/betavae.py:{arg}: choose one of {', '.join(CHECKPOINTS)}")
  return common.get_config("betavae", CHECKPOINTS[arg])
