"""MTCNN's PNet, RNet and ONet as in facenet-pytorch 2.6.0 models/mtcnn.py (no weight loading).

Module names are the original's, so its state_dicts (facenet_pytorch/data/{p,r,o}net.pt) load
strictly. Inputs are NCHW, normalized as detect_face does: (x - 127.5) * 0.0078125.
"""

import torch
from torch import nn


class PNet(nn.Module):
  """Returns (reg [B, 4, h, w], prob [B, 2, h, w])."""

  def __init__(self):
    super().__init__()
    self.conv1 = nn.Conv2d(3, 10, kernel_size=3)
    self.prelu1 = nn.PReLU(10)
    self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
    self.conv2 = nn.Conv2d(10, 16, kernel_size=3)
    self.prelu2 = nn.PReLU(16)
    self.conv3 = nn.Conv2d(16, 32, kernel_size=3)
    self.prelu3 = nn.PReLU(32)
    self.conv4_1 = nn.Conv2d(32, 2, kernel_size=1)
    self.softmax4_1 = nn.Softmax(dim=1)
    self.conv4_2 = nn.Conv2d(32, 4, kernel_size=1)

  def forward(self, x):
    x = self.prelu1(self.conv1(x))
    x = self.pool1(x)
    x = self.prelu2(self.conv2(x))
    x = self.prelu3(self.conv3(x))
    a = self.softmax4_1(self.conv4_1(x))
    b = self.conv4_2(x)
    return b, a


class RNet(nn.Module):
  """Returns (reg [B, 4], prob [B, 2]) for [B, 3, 24, 24] crops."""

  def __init__(self):
    super().__init__()
    self.conv1 = nn.Conv2d(3, 28, kernel_size=3)
    self.prelu1 = nn.PReLU(28)
    self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
    self.conv2 = nn.Conv2d(28, 48, kernel_size=3)
    self.prelu2 = nn.PReLU(48)
    self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
    self.conv3 = nn.Conv2d(48, 64, kernel_size=2)
    self.prelu3 = nn.PReLU(64)
    self.dense4 = nn.Linear(576, 128)
    self.prelu4 = nn.PReLU(128)
    self.dense5_1 = nn.Linear(128, 2)
    self.softmax5_1 = nn.Softmax(dim=1)
    self.dense5_2 = nn.Linear(128, 4)

  def forward(self, x):
    x = self.pool1(self.prelu1(self.conv1(x)))
    x = self.pool2(self.prelu2(self.conv2(x)))
    x = self.prelu3(self.conv3(x))
    x = x.permute(0, 3, 2, 1).contiguous()
    x = self.prelu4(self.dense4(x.view(x.shape[0], -1)))
    a = self.softmax5_1(self.dense5_1(x))
    b = self.dense5_2(x)
    return b, a


class ONet(nn.Module):
  """Returns (reg [B, 4], landmarks [B, 10], prob [B, 2]) for [B, 3, 48, 48] crops."""

  def __init__(self):
    super().__init__()
    self.conv1 = nn.Conv2d(3, 32, kernel_size=3)
    self.prelu1 = nn.PReLU(32)
    self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
    self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
    self.prelu2 = nn.PReLU(64)
    self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
    self.conv3 = nn.Conv2d(64, 64, kernel_size=3)
    self.prelu3 = nn.PReLU(64)
    self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
    self.conv4 = nn.Conv2d(64, 128, kernel_size=2)
    self.prelu4 = nn.PReLU(128)
    self.dense5 = nn.Linear(1152, 256)
    self.prelu5 = nn.PReLU(256)
    self.dense6_1 = nn.Linear(256, 2)
    self.softmax6_1 = nn.Softmax(dim=1)
    self.dense6_2 = nn.Linear(256, 4)
    self.dense6_3 = nn.Linear(256, 10)

  def forward(self, x):
    x = self.pool1(self.prelu1(self.conv1(x)))
    x = self.pool2(self.prelu2(self.conv2(x)))
    x = self.pool3(self.prelu3(self.conv3(x)))
    x = self.prelu4(self.conv4(x))
    x = x.permute(0, 3, 2, 1).contiguous()
    x = self.prelu5(self.dense5(x.view(x.shape[0], -1)))
    a = self.softmax6_1(self.dense6_1(x))
    b = self.dense6_2(x)
    c = self.dense6_3(x)
    return b, c, a


NETS = {"pnet": PNet, "rnet": RNet, "onet": ONet}


def load(state_dicts: dict[str, dict]) -> dict[str, nn.Module]:
  """{"pnet"|"rnet"|"onet": module in eval mode} with each state_dict loaded strictly."""
  modules = {}
  for name, cls in NETS.items():
    module = cls()
    module.load_state_dict({k: torch.as_tensor(v) for k, v in state_dicts[name].items()})
    modules[name] = module.eval()
  return modules
