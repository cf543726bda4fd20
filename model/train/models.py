"""Model definitions of the training flow (plain PyTorch; torchvision is not available).

* ``ccexam-cnn`` — the 2-conv MNIST CNN of the ``ccexam`` package, defined here with the same
  parameter names so that its pretrained ``weights/mnist.pth`` loads directly:
  ``conv3x3(1→32) → ReLU → maxpool2 → conv3x3(32→64) → ReLU → maxpool2 → Linear(3136→128) →
  ReLU → Linear(128→10)``; 28x28 inputs only.
* ``resnet8``, ``resnet20`` — CIFAR-style ResNets (He et al. 2016, depth ``6n+2``): a 3x3 stem,
  three stages of ``n`` basic blocks with ``w``, ``2w``, ``4w`` channels (strides 1, 2, 2),
  global average pooling, one linear layer. Shortcuts that change shape are 1x1 conv + BN.
  Inputs larger than 16x16 get a stride-2 stem (28x28 → 14x14 feature maps), which cuts
  the CPU cost four-fold.

Coded layers (``subbit.model.compress.is_coded``) are the conv and linear weights; biases and
batch-norm tensors travel as side data.
"""

from __future__ import annotations

import numpy as np

from .errors import CheckpointError, ConfigError

__all__ = ["MODELS", "build_model", "load_checkpoint", "check_state_dict"]

MODELS = ("resnet8", "resnet20", "ccexam-cnn")


def _torch():
    import torch
    from torch import nn
    return torch, nn


def _ccexam_cnn():
    torch, nn = _torch()

    class CCExamCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(1, 32, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(32, 64, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
            self.classifier = nn.Sequential(nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))

        def forward(self, x):
            return self.classifier(self.features(x).flatten(1))

    return CCExamCNN()


def _resnet(depth: int, in_channels: int, num_classes: int, image_size: int, width: int):
    torch, nn = _torch()

    class BasicBlock(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.shortcut = nn.Sequential()
            if stride != 1 or cin != cout:
                self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            out = torch.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return torch.relu(out + self.shortcut(x))

    class ResNet(nn.Module):
        def __init__(self):
            super().__init__()
            n = (depth - 2) // 6
            self.conv1 = nn.Conv2d(in_channels, width, 3, 2 if image_size > 16 else 1, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(width)
            stages, cin = [], width
            for k, stride in enumerate((1, 2, 2)):
                cout = width << k
                blocks = []
                for i in range(n):
                    blocks.append(BasicBlock(cin, cout, stride if i == 0 else 1))
                    cin = cout
                stages.append(nn.Sequential(*blocks))
            self.layer1, self.layer2, self.layer3 = stages
            self.fc = nn.Linear(cin, num_classes)
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

        def forward(self, x):
            x = torch.relu(self.bn1(self.conv1(x)))
            x = self.layer3(self.layer2(self.layer1(x)))
            return self.fc(x.mean(dim=(2, 3)))

    return ResNet()


def build_model(name: str, *, in_channels: int = 1, image_size: int = 28, num_classes: int = 10,
                width: int = 16):
    """Instantiate model ``name`` (one of :data:`MODELS`) for the given input geometry.

    Raises
    ------
    ConfigError
        Unknown name, or an input geometry the model cannot take.
    """
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r} (expected one of {', '.join(MODELS)})")
    if name == "ccexam-cnn":
        if (in_channels, image_size, num_classes) != (1, 28, 10):
            raise ConfigError(f"model ccexam-cnn takes 1x28x28 inputs and 10 classes, the dataset has "
                              f"{in_channels}x{image_size}x{image_size} and {num_classes}")
        return _ccexam_cnn()
    if not 1 <= width <= 256:
        raise ConfigError(f"ResNet width must be in 1..256, not {width}")
    return _resnet(int(name[len("resnet"):]), in_channels, num_classes, image_size, width)


def check_state_dict(model, sd: dict, source: str) -> None:
    """Raise :class:`CheckpointError` unless ``sd`` has exactly the model's tensors and shapes."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    extra = [k for k in sd if k not in own]
    shapes = [f"{k}: checkpoint {list(np.shape(sd[k]))}, model {list(own[k].shape)}"
              for k in own if k in sd and tuple(np.shape(sd[k])) != tuple(own[k].shape)]
    problems = []
    if missing:
        problems.append(f"missing {', '.join(missing[:6])}" + (" ..." if len(missing) > 6 else ""))
    if extra:
        problems.append(f"unexpected {', '.join(extra[:6])}" + (" ..." if len(extra) > 6 else ""))
    if shapes:
        problems.append("shape mismatch " + "; ".join(shapes[:6]) + (" ..." if len(shapes) > 6 else ""))
    if problems:
        raise CheckpointError(f"{source} does not match the model: " + "; ".join(problems))


def load_checkpoint(model, path: str) -> None:
    """Load a state_dict file (``.pt``/``.pth``/``.safetensors``) into ``model``, strictly."""
    torch, _ = _torch()
    from ..checkpoint import load_state_dict
    sd = load_state_dict(path)
    check_state_dict(model, sd, path)
    own = model.state_dict()
    model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)).to(own[k].dtype) for k, v in sd.items()})
