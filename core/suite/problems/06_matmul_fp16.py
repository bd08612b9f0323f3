import torch
import torch.nn as nn


class Model(nn.Module):
    """Half-precision matrix product C = A @ B (fp16 inputs, fp16 output)."""

    def __init__(self):
        super().__init__()

    def forward(self, A, B):
        return torch.matmul(A, B)


M = 4096
K = 4096
N = 4096


def get_inputs():
    return [
        torch.randn(M, K, dtype=torch.float16),
        torch.randn(K, N, dtype=torch.float16),
    ]


def get_init_inputs():
    return []


EXTRA_SHAPES = [
    {"M": 127, "K": 65, "N": 33},
    {"M": 200, "K": 264, "N": 136},
    {"M": 3, "K": 1000, "N": 517},
]
