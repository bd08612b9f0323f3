import torch
import torch.nn as nn
from torch.utils.cpp_extension import load_inline

cuda_source = r"""
#include <cuda_runtime.h>
#include <cstdint>
#include <math.h>

constexpr int LN_THREADS = 256;

// Block-wide sum (warp shuffles, then one shared-memory step across warps); every thread gets
// the result. Ends with a barrier so it can be called again right away.
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
    const float result = warp_part[0];
    __syncthreads();
    return result;
}

// One block per row. Pass 1: mean. Pass 2: biased variance as the mean of (x - mean)^2
// (two-pass, so no cancellation). Pass 3: normalize and apply the affine weight and bias.
// VEC: float4 access (cols % 4 == 0 and all four pointers 16-byte aligned).
template <bool VEC>
__global__ void layernorm_kernel(const float* __restrict__ x, const float* __restrict__ w,
                                 const float* __restrict__ b, float* __restrict__ y,
                                 int64_t cols, float eps) {
    const int64_t row = blockIdx.x;
    const float* xr = x + row * cols;
    float* yr = y + row * cols;
    const int64_t cols4 = cols >> 2;

    float s = 0.0f;
    if (VEC) {
        const float4* xr4 = reinterpret_cast<const float4*>(xr);
        for (int64_t j = threadIdx.x; j < cols4; j += blockDim.x) {
            const float4 v = xr4[j];
            s += (v.x + v.y) + (v.z + v.w);
        }
    } else {
        for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) s += xr[j];
    }
    const float mean = block_sum(s) / (float)cols;

    float q = 0.0f;
    if (VEC) {
        const float4* xr4 = reinterpret_cast<const float4*>(xr);
        for (int64_t j = threadIdx.x; j < cols4; j += blockDim.x) {
            const float4 v = xr4[j];
            const float dx = v.x - mean, dy = v.y - mean, dz = v.z - mean, dw = v.w - mean;
            q += (dx * dx + dy * dy) + (dz * dz + dw * dw);
        }
    } else {
        for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
            const float d = xr[j] - mean;
            q += d * d;
        }
    }
    const float var = block_sum(q) / (float)cols;
    const float rstd = 1.0f / sqrtf(var + eps);

    if (VEC) {
        const float4* xr4 = reinterpret_cast<const float4*>(xr);
        const float4* w4 = reinterpret_cast<const float4*>(w);
        const float4* b4 = reinterpret_cast<const float4*>(b);
        float4* yr4 = reinterpret_cast<float4*>(yr);
        for (int64_t j = threadIdx.x; j < cols4; j += blockDim.x) {
            const float4 v = xr4[j];
            const float4 wv = w4[j];
            const float4 bv = b4[j];
            float4 o;
            o.x = (v.x - mean) * rstd * wv.x + bv.x;
            o.y = (v.y - mean) * rstd * wv.y + bv.y;
            o.z = (v.z - mean) * rstd * wv.z + bv.z;
            o.w = (v.w - mean) * rstd * wv.w + bv.w;
            yr4[j] = o;
        }
    } else {
        for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
            yr[j] = (xr[j] - mean) * rstd * w[j] + b[j];
        }
    }
}

void layernorm_launch(const float* x, const float* w, const float* b, float* y,
                      int64_t rows, int64_t cols, float eps, cudaStream_t stream) {
    if (rows <= 0 || cols <= 0) return;
    const uintptr_t addr_bits = reinterpret_cast<uintptr_t>(x) | reinterpret_cast<uintptr_t>(w) |
                                reinterpret_cast<uintptr_t>(b) | reinterpret_cast<uintptr_t>(y);
    const bool vec = (cols % 4 == 0) && ((addr_bits & 15) == 0);
    if (vec) {
        layernorm_kernel<true><<<(unsigned)rows, LN_THREADS, 0, stream>>>(x, w, b, y, cols, eps);
    } else {
        layernorm_kernel<false><<<(unsigned)rows, LN_THREADS, 0, stream>>>(x, w, b, y, cols, eps);
    }
}
"""

cpp_source = r"""
#include <torch/extension.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

void layernorm_launch(const float* x, const float* w, const float* b, float* y,
                      int64_t rows, int64_t cols, float eps, cudaStream_t stream);

torch::Tensor layernorm_forward(torch::Tensor x, torch::Tensor weight, torch::Tensor bias,
                                double eps) {
    TORCH_CHECK(x.is_cuda() && weight.is_cuda() && bias.is_cuda(), "tensors must be on CUDA");
    TORCH_CHECK(x.scalar_type() == torch::kFloat32 && weight.scalar_type() == torch::kFloat32 &&
                bias.scalar_type() == torch::kFloat32, "tensors must be float32");
    TORCH_CHECK(x.dim() >= 1, "x must have at least one dimension");
    const int64_t cols = x.size(-1);
    TORCH_CHECK(weight.numel() == cols && bias.numel() == cols,
                "weight and bias must have as many elements as the last dim of x");
    const c10::cuda::CUDAGuard guard(x.device());
    auto xc = x.contiguous();
    auto wc = weight.contiguous();
    auto bc = bias.contiguous();
    auto y = torch::empty_like(xc);
    if (xc.numel() == 0) return y;
    const int64_t rows = xc.numel() / cols;
    TORCH_CHECK(rows <= 2147483647, "too many rows for one grid");
    layernorm_launch(xc.data_ptr<float>(), wc.data_ptr<float>(), bc.data_ptr<float>(),
                     y.data_ptr<float>(), rows, cols, (float)eps,
                     c10::cuda::getCurrentCUDAStream().stream());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return y;
}
"""

_ext = load_inline(
    name="kw_04_layernorm_cuda",
    cpp_sources=cpp_source,
    cuda_sources=cuda_source,
    functions=["layernorm_forward"],
    no_implicit_headers=True,
    extra_cuda_cflags=["-O3"],
)


class ModelNew(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        # Same parameters, created and initialised in the same order as in Model.
        self.ln = nn.LayerNorm(dim, eps=eps, elementwise_affine=True)
        with torch.no_grad():
            self.ln.weight.copy_(1.0 + 0.1 * torch.randn(dim))
            self.ln.bias.copy_(0.1 * torch.randn(dim))

    def forward(self, x):
        return _ext.layernorm_forward(x, self.ln.weight, self.ln.bias, self.ln.eps)
