import torch
import torch.nn as nn
from torch.utils.cpp_extension import load_inline

cuda_source = r"""
#include <cuda_runtime.h>
#include <cstdint>

constexpr int ROWSUM_THREADS = 256;

// Sum over a whole block; every thread gets the result. Uses warp shuffles plus one
// shared-memory step across the warps.
__device__ __forceinline__ float block_sum(float v) {
    __shared__ float warp_part[32];
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int nwarps = (blockDim.x + 31) >> 5;
    for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
    if (lane == 0) warp_part[warp] = v;
    __syncthreads();
    if (warp == 0) {
        float w = (lane < nwarps) ? warp_part[lane] : 0.0f;
        for (int off = 16; off > 0; off >>= 1) w += __shfl_down_sync(0xffffffffu, w, off);
        if (lane == 0) warp_part[0] = w;
    }
    __syncthreads();
    return warp_part[0];
}

// One block per row. VEC: the row is read as float4 (cols % 4 == 0 and x 16-byte aligned).
template <bool VEC>
__global__ void row_sum_kernel(const float* __restrict__ x, float* __restrict__ y, int64_t cols) {
    const int64_t row = blockIdx.x;
    const float* xr = x + row * cols;
    float acc = 0.0f;
    if (VEC) {
        const float4* xr4 = reinterpret_cast<const float4*>(xr);
        const int64_t cols4 = cols >> 2;
        for (int64_t j = threadIdx.x; j < cols4; j += blockDim.x) {
            const float4 v = xr4[j];
            acc += (v.x + v.y) + (v.z + v.w);
        }
    } else {
        for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) acc += xr[j];
    }
    const float total = block_sum(acc);
    if (threadIdx.x == 0) y[row] = total;
}

void row_sum_launch(const float* x, float* y, int64_t rows, int64_t cols, cudaStream_t stream) {
    if (rows <= 0) return;
    const bool vec = (cols % 4 == 0) && ((reinterpret_cast<uintptr_t>(x) & 15) == 0);
    if (vec) {
        row_sum_kernel<true><<<(unsigned)rows, ROWSUM_THREADS, 0, stream>>>(x, y, cols);
    } else {
        row_sum_kernel<false><<<(unsigned)rows, ROWSUM_THREADS, 0, stream>>>(x, y, cols);
    }
}
"""

cpp_source = r"""
#include <torch/extension.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

void row_sum_launch(const float* x, float* y, int64_t rows, int64_t cols, cudaStream_t stream);

torch::Tensor row_sum_forward(torch::Tensor x) {
    TORCH_CHECK(x.is_cuda(), "x must be a CUDA tensor");
    TORCH_CHECK(x.scalar_type() == torch::kFloat32, "x must be float32");
    TORCH_CHECK(x.dim() >= 1, "x must have at least one dimension");
    const c10::cuda::CUDAGuard guard(x.device());
    auto xc = x.contiguous();
    const int64_t cols = xc.size(-1);
    std::vector<int64_t> out_sizes(xc.sizes().begin(), xc.sizes().end() - 1);
    auto y = torch::empty(out_sizes, xc.options());
    const int64_t rows = y.numel();
    if (rows == 0) return y;
    TORCH_CHECK(rows <= 2147483647, "too many rows for one grid");
    row_sum_launch(xc.data_ptr<float>(), y.data_ptr<float>(), rows, cols,
                   c10::cuda::getCurrentCUDAStream().stream());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return y;
}
"""

_ext = load_inline(
    name="kw_02_row_sum_cuda",
    cpp_sources=cpp_source,
    cuda_sources=cuda_source,
    functions=["row_sum_forward"],
    no_implicit_headers=True,
    extra_cuda_cflags=["-O3"],
)


class ModelNew(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x):
        return _ext.row_sum_forward(x)
