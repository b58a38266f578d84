"""Small plain-PyTorch networks with the op patterns of well-known architectures (no torchvision).

Each builder returns ``(model, example input)``: the model in eval mode with random BatchNorm
statistics, so that reordering and slicing are exercised on non-trivial values.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c)


class BasicBlock(nn.Module):
    """ResNet-18's block: conv-bn-relu-conv-bn, ``out += identity`` (or the downsample), relu."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = _bn(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = _bn(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), _bn(cout))

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class Bottleneck(nn.Module):
    """ResNet-50 / ResNeXt-50 block: 1x1, 3x3 (grouped for ResNeXt), 1x1 x4, downsample."""

    def __init__(self, cin: int, width: int, stride: int = 1, groups: int = 1, expansion: int = 4):
        super().__init__()
        cout = width * expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = _bn(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, groups=groups, bias=False)
        self.bn2 = _bn(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = _bn(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), _bn(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class ResNet(nn.Module):
    def __init__(self, layers: list[nn.Sequential], cstem: int, cout: int, classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, cstem, 3, 1, 1, bias=False)
        self.bn1 = _bn(cstem)
        self.maxpool = nn.MaxPool2d(2)
        self.layer1, self.layer2 = layers
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cout, classes)

    def forward(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18_like():
    layers = [nn.Sequential(BasicBlock(16, 16), BasicBlock(16, 16)),
              nn.Sequential(BasicBlock(16, 32, 2), BasicBlock(32, 32), BasicBlock(32, 32))]  # fmt: skip
    return ResNet(layers, 16, 32), torch.randn(2, 3, 16, 16)


def resnet50_like(groups: int = 1):
    w = 8 if groups == 1 else 16
    layers = [nn.Sequential(Bottleneck(16, w, groups=groups), Bottleneck(4 * w, w, groups=groups)),
              nn.Sequential(Bottleneck(4 * w, w, 2, groups=groups), Bottleneck(4 * w, w, groups=groups))]
    return ResNet(layers, 16, 4 * w), torch.randn(2, 3, 16, 16)


def resnext50_like():
    return resnet50_like(groups=4)


def vgg11_bn_like():
    class VGG(nn.Module):
        def __init__(self):
            super().__init__()
            cfg = [(3, 16), "M", (16, 32), "M", (32, 32)]
            layers: list[nn.Module] = []
            for c in cfg:
                if c == "M":
                    layers.append(nn.MaxPool2d(2))
                else:
                    layers += [nn.Conv2d(*c, 3, padding=1), _bn(c[1]), nn.ReLU(inplace=True)]
            self.features = nn.Sequential(*layers)
            self.avgpool = nn.AdaptiveAvgPool2d((2, 2))
            self.classifier = nn.Sequential(nn.Linear(32 * 4, 64), nn.ReLU(True), nn.Dropout(),
                                            nn.Linear(64, 64), nn.ReLU(True), nn.Dropout(), nn.Linear(64, 10))

        def forward(self, x):
            x = self.avgpool(self.features(x))
            return self.classifier(torch.flatten(x, 1))  # channels x 2 x 2 -> features

    return VGG(), torch.randn(2, 3, 16, 16)


class InvertedResidual(nn.Module):
    """MobileNet-V2 (``se=False``) / V3 / EfficientNet block: expand, depthwise, (SE), project."""

    def __init__(self, cin, cout, stride, expand, act=nn.ReLU6, se=False, gate=nn.Hardsigmoid):
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        layers: list[nn.Module] = [nn.Conv2d(cin, hidden, 1, bias=False), _bn(hidden), act(),
                                   nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
                                   _bn(hidden), act()]  # fmt: skip
        if se:
            layers.append(SqueezeExcite(hidden, act, gate))
        layers += [nn.Conv2d(hidden, cout, 1, bias=False), _bn(cout)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


class SqueezeExcite(nn.Module):
    def __init__(self, c, act, gate):
        super().__init__()
        self.fc1 = nn.Conv2d(c, max(2, c // 4), 1)
        self.act = act()
        self.fc2 = nn.Conv2d(max(2, c // 4), c, 1)
        self.gate = gate()

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        return x * self.gate(self.fc2(self.act(self.fc1(s))))


class MobileNet(nn.Module):
    def __init__(self, blocks, act, cstem=8, clast=16, chead=32):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, cstem, 3, 2, 1, bias=False), _bn(cstem), act(), *blocks,
                                      nn.Conv2d(clast, chead, 1, bias=False), _bn(chead), act())
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(chead, 10))

    def forward(self, x):
        x = self.features(x)
        x = nn.functional.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.classifier(x)


def mobilenet_v2_like():
    blocks = [InvertedResidual(8, 8, 1, 1), InvertedResidual(8, 16, 2, 4), InvertedResidual(16, 16, 1, 4),
              InvertedResidual(16, 16, 1, 4)]  # fmt: skip
    return MobileNet(blocks, nn.ReLU6), torch.randn(2, 3, 16, 16)


def mobilenet_v3_like():
    blocks = [InvertedResidual(8, 8, 1, 2, nn.Hardswish, se=True),
              InvertedResidual(8, 16, 2, 4, nn.Hardswish, se=True),
              InvertedResidual(16, 16, 1, 4, nn.Hardswish, se=True)]  # fmt: skip
    return MobileNet(blocks, nn.Hardswish), torch.randn(2, 3, 16, 16)


def efficientnet_like():
    blocks = [InvertedResidual(8, 16, 2, 4, nn.SiLU, se=True, gate=nn.Sigmoid),
              InvertedResidual(16, 16, 1, 4, nn.SiLU, se=True, gate=nn.Sigmoid)]  # fmt: skip
    return MobileNet(blocks, nn.SiLU), torch.randn(2, 3, 16, 16)


class ViTBlock(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x):
        h = self.ln1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))


def vit_like():
    class ViT(nn.Module):
        def __init__(self, d=16, patch=4, tokens=16):
            super().__init__()
            self.patch = nn.Conv2d(3, d, patch, patch)
            self.pos = nn.Parameter(torch.randn(1, tokens, d) * 0.02)
            self.blocks = nn.Sequential(ViTBlock(d, 2), ViTBlock(d, 2))
            self.norm = nn.LayerNorm(d)
            self.head = nn.Linear(d, 10)

        def forward(self, x):
            x = self.patch(x).flatten(2).transpose(1, 2) + self.pos  # (B, T, D)
            x = self.norm(self.blocks(x))
            return self.head(x.mean(1))

    return ViT(), torch.randn(2, 3, 16, 16)


def user_mlp():
    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2, self.out = nn.Linear(64, 48), nn.Linear(48, 32), nn.Linear(32, 10)

        def forward(self, x):
            x = x.view(x.size(0), -1)
            return self.out(F.relu(self.fc2(F.relu(self.fc1(x)))))

    return MLP(), torch.randn(3, 1, 8, 8)


def concat_net():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), _bn(16), nn.ReLU(), nn.Conv2d(16, 8, 1))
            self.b = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), _bn(8), nn.ReLU())
            self.mix = nn.Conv2d(16, 24, 3, padding=1)
            self.bn = _bn(24)
            self.fc = nn.Linear(24, 10)

        def forward(self, x):
            y = torch.cat([self.a(x), self.b(x)], dim=1)  # a channel concat: frozen there
            y = F.relu(self.bn(self.mix(y)))
            return self.fc(y.mean((2, 3)))

    return Branchy(), torch.randn(2, 3, 8, 8)


ARCHS = {
    "resnet18": resnet18_like,
    "resnet50": resnet50_like,
    "resnext50": resnext50_like,
    "vgg11_bn": vgg11_bn_like,
    "mobilenet_v2": mobilenet_v2_like,
    "mobilenet_v3": mobilenet_v3_like,
    "efficientnet": efficientnet_like,
    "vit": vit_like,
    "mlp": user_mlp,
    "concat": concat_net,
}


def build(name: str, seed: int = 0):
    """``(model, x)`` with random BatchNorm statistics and affine parameters, in eval mode."""
    torch.manual_seed(seed)
    model, x = ARCHS[name]()
    g = torch.Generator().manual_seed(seed + 1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
        if isinstance(m, nn.LayerNorm):
            m.weight.data.copy_(torch.rand(m.normalized_shape, generator=g) + 0.5)
    return model.eval(), x


def make(name: str, seed: int = 0) -> nn.Module:
    """The model of :func:`build` alone: a ``package.module:factory`` for files that rebuild it."""
    return build(name, seed)[0]
