import torch
import torch.nn as nn
from torch.utils.cpp_extension import load_inline

cuda_source = r"""
#include <cuda_runtime.h>
#include <cstdint>
#include <math.h>

// ---------------------------------------------------------------------------------------------
// Fused path (head_dim <= 64): one thread per query row, online softmax, fp32 throughout.
// A block handles AT_BQ = 32 consecutive queries of one (batch, head) with AT_SPLIT warps; lane
// l owns query q0 + l, and warp w takes the w-th quarter of every key tile, so the four warps
// hold four partial softmax states per query that are merged at the end. Keys and values come
// through shared memory (all lanes of a warp read the same key row: a broadcast). Scores are
// kept in base 2: q is pre-multiplied by log2(e) / sqrt(head_dim) and exp2f is used.
// ---------------------------------------------------------------------------------------------
constexpr int AT_BQ = 32;
constexpr int AT_SPLIT = 4;
constexpr int AT_THREADS = AT_BQ * AT_SPLIT;
constexpr int AT_GROUP = 8;    // keys scored together before the running state is rescaled

template <int DM>
__global__ void __launch_bounds__(AT_THREADS)
attn_fused_kernel(const float* __restrict__ q, const float* __restrict__ k,
                  const float* __restrict__ v, float* __restrict__ o, int Sq, int Sk, int d,
                  int q_tiles, float qscale) {
    constexpr int KT = 4096 / DM;             // keys per shared tile: K and V tiles take 32 KB
    constexpr int KPS = KT / AT_SPLIT;        // keys of one tile handled by one warp
    constexpr int BUF_LD = AT_BQ + 1;         // padded stride of the merge buffer
    static_assert(DM % 4 == 0 && KPS % AT_GROUP == 0, "tile shape");
    static_assert(DM * BUF_LD <= KT * DM, "merge buffer must fit in the key tile");

    __shared__ __align__(16) float Ks[KT * DM];
    __shared__ __align__(16) float Vs[KT * DM];
    __shared__ float Ms[AT_BQ];
    __shared__ float Ls[AT_BQ];

    const int tid = threadIdx.x;
    const int lane = tid & 31;
    const int split = tid >> 5;
    const int bh = blockIdx.x / q_tiles;
    const int q0 = (blockIdx.x % q_tiles) * AT_BQ;
    const int qi = q0 + lane;
    const float* qb = q + (size_t)bh * Sq * d;
    const float* kb = k + (size_t)bh * Sk * d;
    const float* vb = v + (size_t)bh * Sk * d;
    float* ob = o + (size_t)bh * Sq * d;

    float qr[DM];
    float acc[DM];
#pragma unroll
    for (int i = 0; i < DM; ++i) {
        qr[i] = (qi < Sq && i < d) ? qb[(size_t)qi * d + i] * qscale : 0.0f;
        acc[i] = 0.0f;
    }
    float m = -INFINITY;   // running max of the (base-2) scores seen by this thread
    float l = 0.0f;        // running sum of exp2(score - m)

    for (int t0 = 0; t0 < Sk; t0 += KT) {
        __syncthreads();   // the previous tile has been consumed
        for (int e = tid; e < KT * DM; e += AT_THREADS) {
            const int r = e / DM;
            const int c = e % DM;
            const int j = t0 + r;
            const bool ok = j < Sk && c < d;
            Ks[e] = ok ? kb[(size_t)j * d + c] : 0.0f;
            Vs[e] = ok ? vb[(size_t)j * d + c] : 0.0f;
        }
        __syncthreads();

        for (int g0 = split * KPS; g0 < (split + 1) * KPS; g0 += AT_GROUP) {
            if (t0 + g0 >= Sk) break;   // the same for the whole warp
            float s[AT_GROUP];
            float mg = m;
#pragma unroll
            for (int g = 0; g < AT_GROUP; ++g) {
                const float* kr = Ks + (g0 + g) * DM;
                float p0 = 0.0f, p1 = 0.0f, p2 = 0.0f, p3 = 0.0f;
#pragma unroll
                for (int i = 0; i < DM; i += 4) {
                    const float4 kv = *reinterpret_cast<const float4*>(kr + i);
                    p0 = fmaf(qr[i + 0], kv.x, p0);
                    p1 = fmaf(qr[i + 1], kv.y, p1);
                    p2 = fmaf(qr[i + 2], kv.z, p2);
                    p3 = fmaf(qr[i + 3], kv.w, p3);
                }
                const float sc = (t0 + g0 + g < Sk) ? (p0 + p1) + (p2 + p3) : -INFINITY;
                s[g] = sc;
                mg = fmaxf(mg, sc);
            }
            // mg is finite: the group's first key is valid. exp2f(-inf) = 0 on the first group.
            const float corr = exp2f(m - mg);
            l *= corr;
#pragma unroll
            for (int i = 0; i < DM; ++i) acc[i] *= corr;
#pragma unroll
            for (int g = 0; g < AT_GROUP; ++g) {
                const float p = exp2f(s[g] - mg);
                l += p;
                const float* vr = Vs + (g0 + g) * DM;
#pragma unroll
                for (int i = 0; i < DM; i += 4) {
                    const float4 vv = *reinterpret_cast<const float4*>(vr + i);
                    acc[i + 0] = fmaf(p, vv.x, acc[i + 0]);
                    acc[i + 1] = fmaf(p, vv.y, acc[i + 1]);
                    acc[i + 2] = fmaf(p, vv.z, acc[i + 2]);
                    acc[i + 3] = fmaf(p, vv.w, acc[i + 3]);
                }
            }
            m = mg;
        }
    }

    // Merge the partial states of warps 1..AT_SPLIT-1 into warp 0, one warp at a time, through
    // the (now free) key tile. Warp 0 always saw key 0, so its m is finite; a warp that saw no
    // key has m = -inf and l = 0 and contributes nothing.
    float* buf = Ks;
    __syncthreads();
    for (int w = 1; w < AT_SPLIT; ++w) {
        if (split == w) {
#pragma unroll
            for (int i = 0; i < DM; ++i) buf[i * BUF_LD + lane] = acc[i];
            Ms[lane] = m;
            Ls[lane] = l;
        }
        __syncthreads();
        if (split == 0) {
            const float m2 = Ms[lane];
            const float mn = fmaxf(m, m2);
            const float c1 = exp2f(m - mn);
            const float c2 = exp2f(m2 - mn);
            l = l * c1 + Ls[lane] * c2;
#pragma unroll
            for (int i = 0; i < DM; ++i) acc[i] = acc[i] * c1 + buf[i * BUF_LD + lane] * c2;
            m = mn;
        }
        __syncthreads();
    }
    if (split == 0) {
        const float inv = 1.0f / l;
#pragma unroll
        for (int i = 0; i < DM; ++i) buf[i * BUF_LD + lane] = acc[i] * inv;
    }
    __syncthreads();
    // The block's output rows are contiguous in memory: write them out coalesced.
    const int rows = min(AT_BQ, Sq - q0);
    for (int e = tid; e < rows * d; e += AT_THREADS) {
        const int r = e / d;
        const int c = e % d;
        ob[(size_t)q0 * d + e] = buf[c * BUF_LD + r];
    }
}

// ---------------------------------------------------------------------------------------------
// General path (head_dim > 64): S = scale * Q K^T into a scratch buffer, softmax over each row,
// O = P V. Batched 32 x 32 shared-memory tiles; each thread computes 4 outputs of a column.
// ---------------------------------------------------------------------------------------------
template <bool B_T>
__global__ void bgemm32_kernel(const float* __restrict__ A, const float* __restrict__ B,
                               float* __restrict__ C, int batch, int M, int N, int K,
                               float alpha) {
    // C[b] (M x N) = alpha * A[b] (M x K) * op(B[b]); op(B) = B (K x N) or B^T (B is N x K).
    __shared__ float As[32][33];
    __shared__ float Bs[32][33];   // Bs[k][n]
    const int tx = threadIdx.x;    // 0..31
    const int ty = threadIdx.y;    // 0..7
    const int m0 = blockIdx.y * 32;
    const int n0 = blockIdx.x * 32;
    for (int b = blockIdx.z; b < batch; b += gridDim.z) {
        const float* Ab = A + (size_t)b * M * K;
        const float* Bb = B + (size_t)b * K * N;
        float* Cb = C + (size_t)b * M * N;
        float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        for (int k0 = 0; k0 < K; k0 += 32) {
#pragma unroll
            for (int r = 0; r < 4; ++r) {
                const int row = ty + 8 * r;
                As[row][tx] = (m0 + row < M && k0 + tx < K) ? Ab[(size_t)(m0 + row) * K + k0 + tx] : 0.0f;
                if (B_T)
                    Bs[tx][row] = (n0 + row < N && k0 + tx < K) ? Bb[(size_t)(n0 + row) * K + k0 + tx] : 0.0f;
                else
                    Bs[row][tx] = (k0 + row < K && n0 + tx < N) ? Bb[(size_t)(k0 + row) * N + n0 + tx] : 0.0f;
            }
            __syncthreads();
#pragma unroll 8
            for (int kk = 0; kk < 32; ++kk) {
                const float bv = Bs[kk][tx];
#pragma unroll
                for (int r = 0; r < 4; ++r) acc[r] = fmaf(As[ty + 8 * r][kk], bv, acc[r]);
            }
            __syncthreads();
        }
#pragma unroll
        for (int r = 0; r < 4; ++r) {
            const int m = m0 + ty + 8 * r;
            const int n = n0 + tx;
            if (m < M && n < N) Cb[(size_t)m * N + n] = alpha * acc[r];
        }
    }
}

// In-place softmax of each row of length n; one warp per row.
__global__ void softmax_rows_kernel(float* __restrict__ S, long long rows, int n) {
    const long long row = (long long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (row >= rows) return;
    float* p = S + row * n;
    float mx = -INFINITY;
    for (int j = lane; j < n; j += 32) mx = fmaxf(mx, p[j]);
    for (int off = 16; off > 0; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
    float sum = 0.0f;
    for (int j = lane; j < n; j += 32) {
        const float e = expf(p[j] - mx);
        p[j] = e;
        sum += e;
    }
    for (int off = 16; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
    const float inv = 1.0f / sum;
    for (int j = lane; j < n; j += 32) p[j] *= inv;
}

bool attn_uses_fused(int d) { return d <= 64; }

// q: BH x Sq x d, k and v: BH x Sk x d, o: BH x Sq x d (all contiguous). scratch holds
// BH * Sq * Sk floats and is used only when attn_uses_fused(d) is false.
void attention_launch(const float* q, const float* k, const float* v, float* o, float* scratch,
                      int BH, int Sq, int Sk, int d, cudaStream_t stream) {
    if (BH <= 0 || Sq <= 0 || d <= 0) return;
    const float scale = 1.0f / sqrtf((float)d);
    if (attn_uses_fused(d)) {
        const int q_tiles = (Sq + AT_BQ - 1) / AT_BQ;
        const long long blocks = (long long)q_tiles * BH;
        const float qscale = scale * 1.4426950408889634f;   // log2(e) / sqrt(d)
        if (d <= 32)
            attn_fused_kernel<32><<<(unsigned)blocks, AT_THREADS, 0, stream>>>(q, k, v, o, Sq, Sk, d, q_tiles, qscale);
        else
            attn_fused_kernel<64><<<(unsigned)blocks, AT_THREADS, 0, stream>>>(q, k, v, o, Sq, Sk, d, q_tiles, qscale);
        return;
    }
    const dim3 threads(32, 8);
    const unsigned gz = (unsigned)(BH < 65535 ? BH : 65535);
    const dim3 grid_s((Sk + 31) / 32, (Sq + 31) / 32, gz);
    bgemm32_kernel<true><<<grid_s, threads, 0, stream>>>(q, k, scratch, BH, Sq, Sk, d, scale);
    const long long rows = (long long)BH * Sq;
    const int rows_per_block = 8;
    softmax_rows_kernel<<<(unsigned)((rows + rows_per_block - 1) / rows_per_block), 32 * rows_per_block, 0, stream>>>(scratch, rows, Sk);
    const dim3 grid_o((d + 31) / 32, (Sq + 31) / 32, gz);
    bgemm32_kernel<false><<<grid_o, threads, 0, stream>>>(scratch, v, o, BH, Sq, d, Sk, 1.0f);
}
"""

cpp_source = r"""
#include <torch/extension.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <limits>

bool attn_uses_fused(int d);
void attention_launch(const float* q, const float* k, const float* v, float* o, float* scratch,
                      int BH, int Sq, int Sk, int d, cudaStream_t stream);

torch::Tensor attention_forward(torch::Tensor q, torch::Tensor k, torch::Tensor v) {
    for (const auto& t : {q, k, v}) {
        TORCH_CHECK(t.is_cuda(), "q, k, v must be CUDA tensors");
        TORCH_CHECK(t.device() == q.device(), "q, k, v must be on the same device");
        TORCH_CHECK(t.scalar_type() == torch::kFloat32, "q, k, v must be float32");
        TORCH_CHECK(t.dim() >= 2 && t.dim() == q.dim(), "q, k, v must have the same rank >= 2");
    }
    const int64_t nd = q.dim();
    for (int64_t i = 0; i < nd - 2; ++i)
        TORCH_CHECK(k.size(i) == q.size(i) && v.size(i) == q.size(i),
                    "q, k, v must share their leading (batch, head) dimensions");
    const int64_t Sq = q.size(-2), d = q.size(-1), Sk = k.size(-2);
    TORCH_CHECK(k.size(-1) == d && v.size(-1) == d && v.size(-2) == Sk,
                "k and v must be (..., Sk, head_dim) like q");
    TORCH_CHECK(Sk > 0, "at least one key is needed");
    const int64_t BH = q.numel() / std::max<int64_t>(Sq * d, 1);
    const int64_t imax = std::numeric_limits<int>::max();
    TORCH_CHECK(BH <= imax && Sq <= imax && Sk <= imax && d <= imax, "dimensions too large");
    const c10::cuda::CUDAGuard guard(q.device());
    auto qc = q.contiguous();
    auto kc = k.contiguous();
    auto vc = v.contiguous();
    auto o = torch::empty_like(qc);
    if (q.numel() == 0) return o;
    torch::Tensor scratch;
    if (!attn_uses_fused((int)d)) scratch = torch::empty({BH, Sq, Sk}, qc.options());
    attention_launch(qc.data_ptr<float>(), kc.data_ptr<float>(), vc.data_ptr<float>(),
                     o.data_ptr<float>(), scratch.defined() ? scratch.data_ptr<float>() : nullptr,
                     (int)BH, (int)Sq, (int)Sk, (int)d, c10::cuda::getCurrentCUDAStream().stream());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return o;
}
"""

_ext = load_inline(
    name="kw_10_attention_cuda",
    cpp_sources=cpp_source,
    cuda_sources=cuda_source,
    functions=["attention_forward"],
    no_implicit_headers=True,
    extra_cuda_cflags=["-O3"],
)


class ModelNew(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, q, k, v):
        return _ext.attention_forward(q, k, v)
