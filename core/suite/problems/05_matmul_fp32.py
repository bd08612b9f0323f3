import torch
import torch.nn as nn


class Model(nn.Module):
    """Single-precision matrix product C = A @ B of an (M, K) and a (K, N) matrix."""

    def __init__(self):
        super().__init__()

    def forward(self, A, B):
        return torch.matmul(A, B)


# ~4.3 GFLOP: ~0.1 ms in fp32 on an H100, ~25 ms on a 2-core CPU (this problem has a CPU
# candidate). The inner dimension is kept at 512 because with randn inputs the fp32 rounding
# error of the k-sum grows with K, and the 1e-4 tolerance must hold whatever summation order
# the reference and the candidate use.
M = 4096
K = 512
N = 1024


def get_inputs():
    return [torch.randn(M, K), torch.randn(K, N)]


def get_init_inputs():
    return []


EXTRA_SHAPES = [
    {"M": 127, "K": 65, "N": 33},
    {"M": 300, "K": 172, "N": 260},
    {"M": 1, "K": 1000, "N": 257},
]
