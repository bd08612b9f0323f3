import torch
import torch.nn as nn
import torch.nn.functional as F


class Model(nn.Module):
    """Non-causal scaled dot-product attention softmax(q k^T / sqrt(head_dim)) v."""

    def __init__(self):
        super().__init__()

    def forward(self, q, k, v):
        return F.scaled_dot_product_attention(q, k, v)


batch_size = 4
num_heads = 8
seq_len = 512
head_dim = 64


def get_inputs():
    shape = (batch_size, num_heads, seq_len, head_dim)
    return [torch.randn(shape), torch.randn(shape), torch.randn(shape)]


def get_init_inputs():
    return []


EXTRA_SHAPES = [
    {"batch_size": 2, "num_heads": 3, "seq_len": 127, "head_dim": 40},
    {"batch_size": 1, "num_heads": 2, "seq_len": 65, "head_dim": 80},
    {"batch_size": 1, "num_heads": 1, "seq_len": 1000, "head_dim": 17},
]
