r"""python main.py --config=configs/pvae.py --mode=variations --workdir=out/pvae --config.checkpoint=DIR

PVAE (Keras plain VAE, arnrob on Kaggle): latent 100, outputs on the 0-255 scale by default.
DIR is written by `python -m port --model=pvae --source=WEIGHTS.weights.h5 --out=DIR` (also
.keras, Keras 2 .h5, or a TF SavedModel with TensorFlow installed). The defaults are the
original's: linear decoder output on the 0-255 scale (every mode writes [0, 1] images) and its
sampling rule, one eps ~ N(0, 0.1^2) shared by the batch. The evaluation report diversified this
model with input noise: add --config.input_noise_std=0.05.
"""

from configs import common


def get_config():
  c = common.get_config("pvae", "")
  c.model.output_activation = "linear"
  c.model.input_range = (0.0, 1.0)
  c.model.output_range = (0.0, 255.0)
  c.sampling_rule = "pvae_shared"
  return c
