import torch
import torch.nn as nn


class Model(nn.Module):
    """Inclusive prefix sum (torch.cumsum) along the last dimension of a 2D tensor."""

    def __init__(self):
        super().__init__()

    def forward(self, x):
        return torch.cumsum(x, dim=-1)


batch_size = 32768
dim = 1024


def get_inputs():
    return [torch.randn(batch_size, dim)]


def get_init_inputs():
    return []


EXTRA_SHAPES = [
    {"batch_size": 7, "dim": 1001},
    {"batch_size": 5, "dim": 4099},
]
