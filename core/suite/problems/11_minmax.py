import torch
import torch.nn as nn


class Model(nn.Module):
    """Two outputs: the max and the min over the last dimension of a 2D tensor (values only)."""

    def __init__(self):
        super().__init__()

    def forward(self, x):
        return torch.amax(x, dim=-1), torch.amin(x, dim=-1)


batch_size = 12288
dim = 4096


def get_inputs():
    return [torch.randn(batch_size, dim)]


def get_init_inputs():
    return []


EXTRA_SHAPES = [
    {"batch_size": 7, "dim": 1001},
    {"batch_size": 129, "dim": 33},
]
