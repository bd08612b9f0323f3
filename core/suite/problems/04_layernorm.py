import torch
import torch.nn as nn


class Model(nn.Module):
    """LayerNorm over the last dimension with an elementwise affine weight and bias."""

    def __init__(self, dim, eps):
        super().__init__()
        self.ln = nn.LayerNorm(dim, eps=eps, elementwise_affine=True)
        # Non-trivial affine parameters, so that weight and bias are really exercised.
        with torch.no_grad():
            self.ln.weight.copy_(1.0 + 0.1 * torch.randn(dim))
            self.ln.bias.copy_(0.1 * torch.randn(dim))

    def forward(self, x):
        return self.ln(x)


batch_size = 8192
dim = 4096
eps = 1e-5


def get_inputs():
    return [torch.randn(batch_size, dim)]


def get_init_inputs():
    return [dim, eps]


EXTRA_SHAPES = [
    {"batch_size": 7, "dim": 1001},
    {"batch_size": 129, "dim": 33},
]
