import torch
import torch.nn as nn


class Model(nn.Module):
    """Transformer-style MLP block: Linear(d, 4d) -> GELU -> Linear(4d, d)."""

    def __init__(self, d_model):
        super().__init__()
        self.fc1 = nn.Linear(d_model, 4 * d_model)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(4 * d_model, d_model)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


tokens = 1024
d_model = 512


def get_inputs():
    return [torch.randn(tokens, d_model)]


def get_init_inputs():
    return [d_model]


EXTRA_SHAPES = [
    {"tokens": 127, "d_model": 33},
    {"tokens": 77, "d_model": 100},
]
