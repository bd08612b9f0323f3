import torch
import torch.nn as nn
from torch.utils.cpp_extension import load_inline

cpp_source = r"""
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <vector>

torch::Tensor row_sum_forward(torch::Tensor x) {
    TORCH_CHECK(x.device().is_cpu(), "x must be a CPU tensor");
    TORCH_CHECK(x.scalar_type() == torch::kFloat32, "x must be float32");
    TORCH_CHECK(x.dim() >= 1, "x must have at least one dimension");
    auto xc = x.contiguous();
    const int64_t cols = xc.size(-1);
    std::vector<int64_t> out_sizes(xc.sizes().begin(), xc.sizes().end() - 1);
    auto y = torch::empty(out_sizes, xc.options());
    const int64_t rows = y.numel();
    const float* xp = xc.data_ptr<float>();
    float* yp = y.data_ptr<float>();
    // Each row is summed in double with four independent accumulators.
    at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) {
            const float* xr = xp + r * cols;
            double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0;
            int64_t j = 0;
            for (; j + 4 <= cols; j += 4) {
                a0 += xr[j];
                a1 += xr[j + 1];
                a2 += xr[j + 2];
                a3 += xr[j + 3];
            }
            for (; j < cols; ++j) a0 += xr[j];
            yp[r] = (float)((a0 + a1) + (a2 + a3));
        }
    });
    return y;
}
"""

_ext = load_inline(
    name="kw_02_row_sum_cpu",
    cpp_sources=cpp_source,
    functions=["row_sum_forward"],
    extra_cflags=["-O3"],
)


class ModelNew(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x):
        return _ext.row_sum_forward(x)
