import torch
import torch.nn as nn


class Model(nn.Module):
    """2D convolution (nn.Conv2d) with bias, NCHW, square kernel, dilation 1, groups 1."""

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding):
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=True
        )

    def forward(self, x):
        return self.conv(x)


batch_size = 16
in_channels = 32
out_channels = 64
height = 64
width = 64
kernel_size = 3
stride = 1
padding = 1


def get_inputs():
    return [torch.randn(batch_size, in_channels, height, width)]


def get_init_inputs():
    return [in_channels, out_channels, kernel_size, stride, padding]


EXTRA_SHAPES = [
    {"batch_size": 3, "in_channels": 5, "out_channels": 7, "height": 17, "width": 29},
    {"batch_size": 1, "in_channels": 35, "out_channels": 67, "height": 9, "width": 70},
]
