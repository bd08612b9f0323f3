import torch
import torch.nn as nn


class Model(nn.Module):
    """Softmax over the last dimension of a 2D tensor."""

    def __init__(self):
        super().__init__()

    def forward(self, x):
        return torch.softmax(x, dim=-1)


batch_size = 2048
dim = 4096


def get_inputs():
    return [torch.randn(batch_size, dim)]


def get_init_inputs():
    return []


EXTRA_SHAPES = [
    {"batch_size": 7, "dim": 1001},
    {"batch_size": 129, "dim": 33},
]
