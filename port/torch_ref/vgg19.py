"""torchvision's VGG19 `features` (ImageNet weights vgg19-dcbb9e9d.pth), without torchvision.

The layout of torchvision 0.28's `vgg19().features`: configuration "E" of Simonyan & Zisserman,
3x3 convolutions with padding 1, each followed by ReLU, and 2x2 max pooling, so that the keys are
`features.{0,2,5,7,10,...}.{weight,bias}`. The inputs are [0, 1] images normalized with
torchvision's ImageNet mean and std, as its transforms do. The forward stops at relu3_1, the last
layer the DFC-VAE loss (Hou et al. 2017, VAE-123) reads.
"""

import torch
import torch.nn as nn

CONFIG_E = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
            512, 512, 512, 512, "M")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TAPS = {"relu1_1": 1, "relu2_1": 6, "relu3_1": 11}  # Index in `features` of each tapped ReLU.


def make_features():
  """torchvision.models.vgg.make_layers(cfgs["E"], batch_norm=False)."""
  layers, in_channels = [], 3
  for v in CONFIG_E:
    if v == "M":
      layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    else:
      layers += [nn.Conv2d(in_channels, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
      in_channels = v
  return nn.Sequential(*layers)


class VGG19Features(nn.Module):
  """[N, 3, H, W] in [0, 1] -> {relu1_1, relu2_1, relu3_1} activations, NCHW."""

  def __init__(self):
    super().__init__()
    self.features = make_features()
    self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
    self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

  def forward(self, x):
    x = (x - self.mean) / self.std
    out, last = {}, max(TAPS.values())
    for i, layer in enumerate(self.features[:last + 1]):
      x = layer(x)
      for name, index in TAPS.items():
        if index == i:
          out[name] = x.clone()  # The next conv's input; ReLU(inplace) would not alter it.
    return out
