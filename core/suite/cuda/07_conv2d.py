import torch
import torch.nn as nn
from torch.utils.cpp_extension import load_inline

cuda_source = r"""
#include <cuda_runtime.h>
#include <cstdint>

// Direct convolution, NCHW input, KCRS weight, dilation 1, groups 1, fp32 accumulation.
//
// Tiled kernel: a block of 256 threads computes a 16x16 tile of output pixels for 16 output
// channels of one image; each thread owns one pixel and keeps 16 accumulators in registers.
// The input channels are walked in chunks: for each chunk the block stages the input patch the
// tile needs (zero-filled outside the image, which implements the padding) and the matching
// weights in shared memory. Weights are stored [ci][r][s][co] so a thread reads 4 output
// channels' weights with one broadcast float4 load.

constexpr int CONV_TW = 16;       // output tile width
constexpr int CONV_TH = 16;       // output tile height
constexpr int CONV_CO = 16;       // output channels per block
constexpr int CONV_THREADS = CONV_TW * CONV_TH;

struct ConvShape {
    int N, C, H, W;       // input
    int K, R, S;          // output channels, kernel height, kernel width
    int sh, sw, ph, pw;   // stride, padding
    int OH, OW;           // output
};

__global__ void __launch_bounds__(CONV_THREADS)
conv2d_tiled_kernel(const float* __restrict__ x, const float* __restrict__ w,
                    const float* __restrict__ bias, float* __restrict__ y,
                    ConvShape p, int tiles_w, int tiles_per_image,
                    int cin_chunk, int patch_h, int patch_w) {
    extern __shared__ float4 conv_smem4[];
    float* s_w = reinterpret_cast<float*>(conv_smem4);        // [cin_chunk][R][S][CONV_CO]
    float* s_in = s_w + (size_t)cin_chunk * p.R * p.S * CONV_CO; // [cin_chunk][patch_h][patch_w]

    const int n = blockIdx.x / tiles_per_image;
    const int tile = blockIdx.x - n * tiles_per_image;
    const int tile_y = tile / tiles_w;
    const int tile_x = tile - tile_y * tiles_w;
    const int oh0 = tile_y * CONV_TH;
    const int ow0 = tile_x * CONV_TW;
    const int co0 = blockIdx.y * CONV_CO;

    const int tid = threadIdx.x;
    const int tx = tid % CONV_TW;
    const int ty = tid / CONV_TW;
    const int ih0 = oh0 * p.sh - p.ph;
    const int iw0 = ow0 * p.sw - p.pw;
    const int RS = p.R * p.S;
    const int patch = patch_h * patch_w;

    const float* xn = x + (int64_t)n * p.C * p.H * p.W;

    float acc[CONV_CO];
#pragma unroll
    for (int q = 0; q < CONV_CO; ++q) acc[q] = 0.0f;

    for (int c0 = 0; c0 < p.C; c0 += cin_chunk) {
        const int cc = min(cin_chunk, p.C - c0);

        // Input patch for channels [c0, c0 + cc): consecutive threads read consecutive columns.
        for (int i = tid; i < cc * patch; i += CONV_THREADS) {
            const int ci = i / patch;
            const int rem = i - ci * patch;
            const int py = rem / patch_w;
            const int px = rem - py * patch_w;
            const int ih = ih0 + py;
            const int iw = iw0 + px;
            float v = 0.0f;
            if (ih >= 0 && ih < p.H && iw >= 0 && iw < p.W) {
                v = xn[((int64_t)(c0 + ci) * p.H + ih) * p.W + iw];
            }
            s_in[i] = v;
        }

        // Weights: for each output channel the cc*R*S values are contiguous in global memory.
        const int per_co = cc * RS;
        for (int i = tid; i < CONV_CO * per_co; i += CONV_THREADS) {
            const int co = i / per_co;
            const int rest = i - co * per_co;     // = ci * RS + (r * S + s)
            float v = 0.0f;
            if (co0 + co < p.K) {
                v = w[((int64_t)(co0 + co) * p.C + c0) * RS + rest];
            }
            s_w[rest * CONV_CO + co] = v;
        }
        __syncthreads();

        for (int ci = 0; ci < cc; ++ci) {
            for (int r = 0; r < p.R; ++r) {
                const float* in_row = s_in + (ci * patch_h + ty * p.sh + r) * patch_w + tx * p.sw;
                const float* w_row = s_w + (size_t)(ci * RS + r * p.S) * CONV_CO;
                for (int s = 0; s < p.S; ++s) {
                    const float v = in_row[s];
                    const float4* wp = reinterpret_cast<const float4*>(w_row + s * CONV_CO);
#pragma unroll
                    for (int q = 0; q < CONV_CO / 4; ++q) {
                        const float4 wv = wp[q];
                        acc[4 * q + 0] = fmaf(v, wv.x, acc[4 * q + 0]);
                        acc[4 * q + 1] = fmaf(v, wv.y, acc[4 * q + 1]);
                        acc[4 * q + 2] = fmaf(v, wv.z, acc[4 * q + 2]);
                        acc[4 * q + 3] = fmaf(v, wv.w, acc[4 * q + 3]);
                    }
                }
            }
        }
        __syncthreads();
    }

    const int oh = oh0 + ty;
    const int ow = ow0 + tx;
    if (oh < p.OH && ow < p.OW) {
#pragma unroll
        for (int q = 0; q < CONV_CO; ++q) {
            const int co = co0 + q;
            if (co < p.K) {
                const float b = (bias != nullptr) ? bias[co] : 0.0f;
                y[(((int64_t)n * p.K + co) * p.OH + oh) * p.OW + ow] = acc[q] + b;
            }
        }
    }
}

// Plain direct convolution, one thread per output element, used only when the kernel window
// is so large that even one input channel's patch does not fit in shared memory.
__global__ void conv2d_simple_kernel(const float* __restrict__ x, const float* __restrict__ w,
                                     const float* __restrict__ bias, float* __restrict__ y,
                                     ConvShape p, int64_t total) {
    const int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += step) {
        const int ow = (int)(idx % p.OW);
        int64_t t = idx / p.OW;
        const int oh = (int)(t % p.OH);
        t /= p.OH;
        const int co = (int)(t % p.K);
        const int n = (int)(t / p.K);
        float acc = 0.0f;
        for (int c = 0; c < p.C; ++c) {
            const float* xc = x + ((int64_t)n * p.C + c) * p.H * p.W;
            const float* wc = w + ((int64_t)co * p.C + c) * p.R * p.S;
            for (int r = 0; r < p.R; ++r) {
                const int ih = oh * p.sh - p.ph + r;
                if (ih < 0 || ih >= p.H) continue;
                for (int s = 0; s < p.S; ++s) {
                    const int iw = ow * p.sw - p.pw + s;
                    if (iw < 0 || iw >= p.W) continue;
                    acc = fmaf(xc[(int64_t)ih * p.W + iw], wc[r * p.S + s], acc);
                }
            }
        }
        y[idx] = acc + ((bias != nullptr) ? bias[co] : 0.0f);
    }
}

void conv2d_launch(const float* x, const float* w, const float* bias, float* y,
                   int N, int C, int H, int W, int K, int R, int S,
                   int sh, int sw, int ph, int pw, int OH, int OW, cudaStream_t stream) {
    if (N <= 0 || K <= 0 || OH <= 0 || OW <= 0) return;
    ConvShape p{N, C, H, W, K, R, S, sh, sw, ph, pw, OH, OW};

    const int patch_h = (CONV_TH - 1) * sh + R;
    const int patch_w = (CONV_TW - 1) * sw + S;
    const size_t per_channel = (size_t)R * S * CONV_CO + (size_t)patch_h * patch_w;  // floats
    const size_t smem_limit = 48 * 1024 / sizeof(float);
    int cin_chunk = (int)(smem_limit / per_channel);
    if (cin_chunk > 8) cin_chunk = 8;
    if (cin_chunk > C) cin_chunk = C;

    if (cin_chunk >= 1) {
        const int tiles_w = (OW + CONV_TW - 1) / CONV_TW;
        const int tiles_h = (OH + CONV_TH - 1) / CONV_TH;
        const int tiles_per_image = tiles_w * tiles_h;
        dim3 grid((unsigned)((int64_t)N * tiles_per_image), (unsigned)((K + CONV_CO - 1) / CONV_CO));
        const size_t smem = (size_t)cin_chunk * per_channel * sizeof(float);
        conv2d_tiled_kernel<<<grid, CONV_THREADS, smem, stream>>>(
            x, w, bias, y, p, tiles_w, tiles_per_image, cin_chunk, patch_h, patch_w);
    } else {
        const int64_t total = (int64_t)N * K * OH * OW;
        const int threads = 256;
        int64_t blocks = (total + threads - 1) / threads;
        if (blocks > 132 * 64) blocks = 132 * 64;
        conv2d_simple_kernel<<<(unsigned)blocks, threads, 0, stream>>>(x, w, bias, y, p, total);
    }
}
"""

cpp_source = r"""
#include <torch/extension.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

void conv2d_launch(const float* x, const float* w, const float* bias, float* y,
                   int N, int C, int H, int W, int K, int R, int S,
                   int sh, int sw, int ph, int pw, int OH, int OW, cudaStream_t stream);

torch::Tensor conv2d_forward(torch::Tensor x, torch::Tensor weight, torch::Tensor bias,
                             int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w) {
    TORCH_CHECK(x.is_cuda() && weight.is_cuda() && bias.is_cuda(), "tensors must be on CUDA");
    TORCH_CHECK(x.scalar_type() == torch::kFloat32 && weight.scalar_type() == torch::kFloat32 &&
                bias.scalar_type() == torch::kFloat32, "tensors must be float32");
    TORCH_CHECK(x.dim() == 4 && weight.dim() == 4, "x must be NCHW and weight KCRS");
    TORCH_CHECK(weight.size(1) == x.size(1), "channel mismatch (groups must be 1)");
    TORCH_CHECK(bias.numel() == weight.size(0), "bias must have one value per output channel");
    TORCH_CHECK(stride_h >= 1 && stride_w >= 1 && pad_h >= 0 && pad_w >= 0, "bad stride/padding");
    const c10::cuda::CUDAGuard guard(x.device());
    auto xc = x.contiguous();
    auto wc = weight.contiguous();
    auto bc = bias.contiguous();
    const int64_t N = xc.size(0), C = xc.size(1), H = xc.size(2), W = xc.size(3);
    const int64_t K = wc.size(0), R = wc.size(2), S = wc.size(3);
    const int64_t OH = (H + 2 * pad_h - R) / stride_h + 1;
    const int64_t OW = (W + 2 * pad_w - S) / stride_w + 1;
    TORCH_CHECK(H + 2 * pad_h >= R && W + 2 * pad_w >= S, "kernel larger than padded input");
    TORCH_CHECK(xc.numel() < (int64_t)1 << 31 && wc.numel() < (int64_t)1 << 31 &&
                N * K * OH * OW < (int64_t)1 << 31, "tensor too large for 32-bit shape fields");
    TORCH_CHECK((K + 15) / 16 <= 65535, "too many output channels for the grid");
    auto y = torch::empty({N, K, OH, OW}, xc.options());
    if (y.numel() == 0) return y;
    conv2d_launch(xc.data_ptr<float>(), wc.data_ptr<float>(), bc.data_ptr<float>(),
                  y.data_ptr<float>(), (int)N, (int)C, (int)H, (int)W, (int)K, (int)R, (int)S,
                  (int)stride_h, (int)stride_w, (int)pad_h, (int)pad_w, (int)OH, (int)OW,
                  c10::cuda::getCurrentCUDAStream().stream());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return y;
}
"""

_ext = load_inline(
    name="kw_07_conv2d_cuda",
    cpp_sources=cpp_source,
    cuda_sources=cuda_source,
    functions=["conv2d_forward"],
    no_implicit_headers=True,
    extra_cuda_cflags=["-O3"],
)


class ModelNew(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride, padding):
        super().__init__()
        # Same parameters, created in the same order as Model (nn.Conv2d's own initialisation).
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=True
        )

    def forward(self, x):
        c = self.conv
        return _ext.conv2d_forward(
            x, c.weight, c.bias, c.stride[0], c.stride[1], c.padding[0], c.padding[1]
        )
