import torch
import torch.nn as nn


class Model(nn.Module):
    """Fully connected layer followed by ReLU: y = relu(x @ W^T + b)."""

    def __init__(self, in_features, out_features):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.linear(x))


batch_size = 1024
in_features = 2048
out_features = 2048


def get_inputs():
    return [torch.randn(batch_size, in_features)]


def get_init_inputs():
    return [in_features, out_features]


EXTRA_SHAPES = [
    {"batch_size": 127, "in_features": 65, "out_features": 33},
    {"batch_size": 200, "in_features": 260, "out_features": 100},
]
