import torch
import torch.nn as nn


class Model(nn.Module):
    """GELU with the tanh approximation, applied elementwise to a 2D tensor."""

    def __init__(self):
        super().__init__()

    def forward(self, x):
        return torch.nn.functional.gelu(x, approximate="tanh")


batch_size = 2048
dim = 2048


def get_inputs():
    return [torch.randn(batch_size, dim)]


def get_init_inputs():
    return []


EXTRA_SHAPES = [
    {"batch_size": 7, "dim": 1001},
    {"batch_size": 1, "dim": 12347},
]
