"""Each original's training recipe, as its own code sets it.

- Beta-VAE, matthew-liu/beta-vae train.py and models.py: Adam lr 1e-4 (models.py: "Adam 1e-4"),
  batch 256, 100 epochs, loss (sum BCE + beta KL) / B with beta 1; shuffled; trained on CelebA
  partitions 0 and 1 (train + validation), tested on partition 2.
- DFC-VAE, the same repository's last train.py: Adam lr 1e-3, batch 256, 400 epochs, latent 100,
  the inherited Beta-VAE loss (no perceptual loss in that code).
- Vanilla VAE, hussamalafandi/Generative_AI notebooks 01 (`vae_config`): Adam lr 1e-3, batch 64,
  10 epochs on the first 80,000 train images, loss sum MSE + KL (not divided by the batch size);
  shuffled; validated on the first 10,000 validation images.
- PVAE, the Kaggle notebook (copy in AbhiJeet70/CVAE-PL): Keras Adam lr 1.5e-3 (eps 1e-7),
  batch 64 (remainder dropped), 30 epochs, loss 1.8 MSE(0-255) + 10 KL, NOT shuffled (file
  order), ReduceLROnPlateau(monitor='val_loss_wo_weight', factor=0.2, patience=2) once per epoch
  (Keras defaults min_delta 1e-4, cooldown 0, min_lr 0). Its sampling eps ~ N(0, 0.1^2) is one
  (1, latent) draw shared by the batch, at training time too.

jaxvae trains on the CelebA train split and validates on the validation split for every model
(the Beta-VAE and DFC-VAE originals trained on train + validation and tested on test).
"""

from typing import NamedTuple


class Recipe(NamedTuple):
  loss: str  # jaxvae.train.losses kind
  beta: float  # KL weight
  alpha: float  # reconstruction weight (pvae)
  optimizer: str  # jaxvae.train.optim kind
  learning_rate: float
  batch_size: int
  epochs: int
  shuffle: bool
  plateau: bool  # ReduceLROnPlateau on the validation loss_wo_weight, once per epoch
  eps_std: float  # std of the sampling noise
  eps_shared: bool  # one eps for the whole batch (the PVAE's Lambda layer)
  max_train_images: int  # 0 = all


RECIPES: dict[str, Recipe] = {
    "betavae": Recipe("bce_sum", 1.0, 1.0, "torch_adam", 1e-4, 256, 100, True, False, 1.0, False,
                      0),
    "dfcvae": Recipe("bce_sum", 1.0, 1.0, "torch_adam", 1e-3, 256, 400, True, False, 1.0, False,
                     0),
    "vanilla": Recipe("mse_sum", 1.0, 1.0, "torch_adam", 1e-3, 64, 10, True, False, 1.0, False,
                      80000),
    "pvae": Recipe("pvae", 10.0, 1.8, "keras_adam", 1.5e-3, 64, 30, False, True, 0.1, True, 0),
}

# The DFC-VAE paper's feature perceptual loss (Hou et al. 2017): weights of the VGG19 feature
# term (relu1_1, relu2_1, relu3_1) and of the KL term.
PERCEPTUAL_WEIGHT = 0.5
PERCEPTUAL_KL_WEIGHT = 1.0


def get(model_name: str) -> Recipe:
  if model_name not in RECIPES:
    raise ValueError(f"no training recipe for model {model_name!r}; known: {', '.join(RECIPES)}")
  return RECIPES[model_name]
