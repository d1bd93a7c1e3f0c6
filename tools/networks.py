"""The two PyTorch networks that `examples/fsrcnn` and `examples/unet` port, shared by
`tools/make_networks.py` (which writes their weights and test fixtures) and
`tools/peer_networks.py` (which times them beside the Rust examples). The module names are
the `state_dict` keys the Rust side loads by.
"""

import torch
from torch import nn


class Fsrcnn(nn.Module):
    """FSRCNN (Dong, Loy and Tang, "Accelerating the Super-Resolution Convolutional Neural
    Network", ECCV 2016) for x3 on one channel, the paper's FSRCNN(56, 12, 4): a 5x5
    feature extraction to `d` channels, a 1x1 shrink to `s`, `m` 3x3 mapping layers, a 1x1
    expand back to `d`, each followed by a per-channel PReLU, and a 9x9 transposed
    convolution with stride 3 that makes the high-resolution picture (padding 4 and
    output padding 2, so an `h x w` input gives exactly `3h x 3w`)."""

    def __init__(self, d=56, s=12, m=4):
        super().__init__()
        self.feature = nn.Conv2d(1, d, 5, padding=2)
        self.feature_prelu = nn.PReLU(d)
        self.shrink = nn.Conv2d(d, s, 1)
        self.shrink_prelu = nn.PReLU(s)
        self.mapping = nn.ModuleList(nn.Conv2d(s, s, 3, padding=1) for _ in range(m))
        self.mapping_prelu = nn.ModuleList(nn.PReLU(s) for _ in range(m))
        self.expand = nn.Conv2d(s, d, 1)
        self.expand_prelu = nn.PReLU(d)
        self.deconv = nn.ConvTranspose2d(d, 1, 9, stride=3, padding=4, output_padding=2)

    def forward(self, x):
        x = self.feature_prelu(self.feature(x))
        x = self.shrink_prelu(self.shrink(x))
        for conv, prelu in zip(self.mapping, self.mapping_prelu):
            x = prelu(conv(x))
        x = self.expand_prelu(self.expand(x))
        return self.deconv(x)


class ConvBn(nn.Module):
    """A 3x3 convolution without bias, then BatchNorm2d and ReLU: `conv` and `bn`."""

    def __init__(self, cin, cout, stride=1, dilation=1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation,
                              dilation=dilation, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)))


class DilatedUNet(nn.Module):
    """A small U-Net with a dilated bottleneck, for 3-channel input whose sides are
    multiples of 4: two encoder levels (3x3 convolutions with batch norm, stride-2 3x3
    convolutions to go down), a context block of 3x3 convolutions with dilations 2, 4 and 8
    at a quarter of the resolution, and a decoder of k=2, stride-2 transposed convolutions,
    each followed by concatenation with the encoder's output of that size and a 3x3
    convolution; a 1x1 head gives `classes` logits per pixel."""

    def __init__(self, classes=2):
        super().__init__()
        self.enc1 = ConvBn(3, 16)
        self.down1 = ConvBn(16, 32, stride=2)
        self.enc2 = ConvBn(32, 32)
        self.down2 = ConvBn(32, 64, stride=2)
        self.context = nn.ModuleList(ConvBn(64, 64, dilation=d) for d in (2, 4, 8))
        self.up2 = nn.ConvTranspose2d(64, 32, 2, stride=2)
        self.dec2 = ConvBn(64, 32)
        self.up1 = nn.ConvTranspose2d(32, 16, 2, stride=2)
        self.dec1 = ConvBn(32, 16)
        self.head = nn.Conv2d(16, classes, 1)

    def forward(self, x):
        skip1 = self.enc1(x)
        skip2 = self.enc2(self.down1(skip1))
        x = self.down2(skip2)
        for block in self.context:
            x = block(x)
        x = self.dec2(torch.cat([self.up2(x), skip2], dim=1))
        x = self.dec1(torch.cat([self.up1(x), skip1], dim=1))
        return self.head(x)


NETWORKS = {"fsrcnn": Fsrcnn, "unet": DilatedUNet}
