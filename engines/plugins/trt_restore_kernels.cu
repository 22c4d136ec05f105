// trt-restore CUDA kernels: masked nonlocal attention (head dimension 512) and the HR masked
// patch match. One source for the TensorRT plugins and for the plain C entry points declared
// in trt_restore_kernels.h (verification without TensorRT).
//
// Masked attention, per batch item (C = 512 channels, N positions, Nv valid keys):
//   1. flags/compaction: slot[j] = rank of j among the valid keys (block counts, one-block
//      scan, block-local scan: deterministic, no atomics);
//   2. pack: phi and g of the valid keys into compacted buffers (fp16 for the tensor-core path,
//      fp32 for the fp32 path), zero-padded to a multiple of 64 keys;
//   3. attention: each CTA owns a tile of queries, streams the compacted key/value tiles and
//      keeps a running max / running sum per row (online softmax), so memory is O(N) and
//      N x N is never formed. fp16 path: mma.sync m16n8k16 (fp16 in, fp32 accumulate) with
//      ldmatrix and cp.async double buffering; fp32 path: SIMT fp32 FMA.
// Patch match, per batch item: hole flags per patch, compaction of hole and key patches, pack
// into rows, key norms, an fp32 tiled GEMM fused with a per-row arg-max (split over key
// ranges, merged in index order: first index on ties), then a gather of the full tensor.
#include "trt_restore_kernels.h"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cfloat>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdio>

namespace trtr
{
namespace
{

constexpr int kChannels = TRTR_ATTENTION_CHANNELS;
constexpr int kKeyPad = 64;       // packed key/value buffers hold a multiple of this many keys
constexpr int kScanThreads = 256; // compaction: 256 threads x 4 flags per block
constexpr int kScanBlock = kScanThreads * 4;
constexpr size_t kAlign = 256;
constexpr unsigned kFull = 0xffffffffu;

std::atomic<int> gForcedConfig{TRTR_CONFIG_AUTO};

inline size_t alignUp(size_t v, size_t a)
{
    return (v + a - 1) / a * a;
}

inline int ceilDiv(int a, int b)
{
    return (a + b - 1) / b;
}

inline int cudaStatus(cudaError_t e)
{
    return e == cudaSuccess ? TRTR_OK : TRTR_ERR_CUDA_BASE + static_cast<int>(e);
}

#define TRTR_RETURN_IF_LAUNCH_FAILED()                                                                                 \
    do                                                                                                                 \
    {                                                                                                                  \
        cudaError_t launchError_ = cudaGetLastError();                                                                 \
        if (launchError_ != cudaSuccess)                                                                               \
        {                                                                                                              \
            return cudaStatus(launchError_);                                                                           \
        }                                                                                                              \
    } while (0)

// ------------------------------------------------------------------------------------------
// Small device helpers
// ------------------------------------------------------------------------------------------
__device__ __forceinline__ float toFloat(float v)
{
    return v;
}
__device__ __forceinline__ float toFloat(__half v)
{
    return __half2float(v);
}
template <typename T>
__device__ __forceinline__ T fromFloat(float v);
template <>
__device__ __forceinline__ float fromFloat<float>(float v)
{
    return v;
}
template <>
__device__ __forceinline__ __half fromFloat<__half>(float v)
{
    return __float2half_rn(v);
}

// Exclusive scan of one int per thread over a block of kScanThreads threads.
__device__ int blockExclusiveScan(int value, int* blockTotal)
{
    __shared__ int warpSums[kScanThreads / 32];
    __shared__ int total;
    int const lane = threadIdx.x & 31;
    int const warp = threadIdx.x >> 5;
    int inclusive = value;
#pragma unroll
    for (int offset = 1; offset < 32; offset <<= 1)
    {
        int const other = __shfl_up_sync(kFull, inclusive, offset);
        if (lane >= offset)
        {
            inclusive += other;
        }
    }
    if (lane == 31)
    {
        warpSums[warp] = inclusive;
    }
    __syncthreads();
    if (warp == 0)
    {
        int const mine = lane < kScanThreads / 32 ? warpSums[lane] : 0;
        int running = mine;
#pragma unroll
        for (int offset = 1; offset < 32; offset <<= 1)
        {
            int const other = __shfl_up_sync(kFull, running, offset);
            if (lane >= offset)
            {
                running += other;
            }
        }
        if (lane < kScanThreads / 32)
        {
            warpSums[lane] = running - mine;
        }
        if (lane == kScanThreads / 32 - 1)
        {
            total = running;
        }
    }
    __syncthreads();
    int const result = warpSums[warp] + inclusive - value;
    *blockTotal = total;
    __syncthreads(); // the shared arrays may be reused by the next call
    return result;
}

// ------------------------------------------------------------------------------------------
// Compaction: flags -> slot (rank among flags == want, or -1), list[slot] = index, count
// ------------------------------------------------------------------------------------------
template <typename T>
__global__ void validFlagsKernel(T const* __restrict__ valid, int n, unsigned char* __restrict__ flags)
{
    int const i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
    {
        flags[i] = toFloat(valid[i]) > 0.5f ? 1 : 0;
    }
}

__global__ void __launch_bounds__(kScanThreads) countFlagsKernel(
    unsigned char const* __restrict__ flags, int n, int want, int* __restrict__ blockCounts)
{
    int const base = blockIdx.x * kScanBlock + threadIdx.x * 4;
    int count = 0;
#pragma unroll
    for (int k = 0; k < 4; ++k)
    {
        int const i = base + k;
        if (i < n && flags[i] == want)
        {
            ++count;
        }
    }
    int total = 0;
    blockExclusiveScan(count, &total);
    if (threadIdx.x == 0)
    {
        blockCounts[blockIdx.x] = total;
    }
}

__global__ void __launch_bounds__(kScanThreads) scanCountsKernel(
    int const* __restrict__ blockCounts, int nBlocks, int* __restrict__ blockOffsets, int* __restrict__ total)
{
    int carry = 0;
    for (int start = 0; start < nBlocks; start += kScanThreads)
    {
        int const i = start + threadIdx.x;
        int const value = i < nBlocks ? blockCounts[i] : 0;
        int chunkTotal = 0;
        int const exclusive = blockExclusiveScan(value, &chunkTotal);
        if (i < nBlocks)
        {
            blockOffsets[i] = carry + exclusive;
        }
        carry += chunkTotal;
    }
    if (threadIdx.x == 0)
    {
        *total = carry;
    }
}

__global__ void __launch_bounds__(kScanThreads) assignSlotsKernel(unsigned char const* __restrict__ flags, int n,
    int want, int const* __restrict__ blockOffsets, int* __restrict__ slot, int* __restrict__ list)
{
    int const base = blockIdx.x * kScanBlock + threadIdx.x * 4;
    bool mine[4];
    int count = 0;
#pragma unroll
    for (int k = 0; k < 4; ++k)
    {
        int const i = base + k;
        mine[k] = i < n && flags[i] == want;
        count += mine[k] ? 1 : 0;
    }
    int total = 0;
    int next = blockOffsets[blockIdx.x] + blockExclusiveScan(count, &total);
#pragma unroll
    for (int k = 0; k < 4; ++k)
    {
        int const i = base + k;
        if (i < n)
        {
            if (mine[k])
            {
                slot[i] = next;
                if (list != nullptr)
                {
                    list[next] = i;
                }
                ++next;
            }
            else
            {
                slot[i] = -1;
            }
        }
    }
}

struct Compaction
{
    int* blockCounts;
    int* blockOffsets;
};

// slot/list/count for flags == want; asynchronous, count stays on the device.
int compact(unsigned char const* flags, int n, int want, Compaction const& scratch, int* slot, int* list, int* count,
    cudaStream_t stream)
{
    int const nBlocks = ceilDiv(n, kScanBlock);
    countFlagsKernel<<<nBlocks, kScanThreads, 0, stream>>>(flags, n, want, scratch.blockCounts);
    TRTR_RETURN_IF_LAUNCH_FAILED();
    scanCountsKernel<<<1, kScanThreads, 0, stream>>>(scratch.blockCounts, nBlocks, scratch.blockOffsets, count);
    TRTR_RETURN_IF_LAUNCH_FAILED();
    assignSlotsKernel<<<nBlocks, kScanThreads, 0, stream>>>(flags, n, want, scratch.blockOffsets, slot, list);
    TRTR_RETURN_IF_LAUNCH_FAILED();
    return TRTR_OK;
}

// ------------------------------------------------------------------------------------------
// Attention: packing of the valid keys
// ------------------------------------------------------------------------------------------
// K: (nPad, 512) row-major. V: channel-major (512, ldv) when kVChannelMajor (tensor-core
// path: rows of V^T feed ldmatrix), else (nPad, 512) row-major (fp32 path).
template <typename Tin, typename Tc, bool kVChannelMajor>
__global__ void __launch_bounds__(256) packKeysKernel(Tin const* __restrict__ phi, Tin const* __restrict__ g,
    int const* __restrict__ slot, int n, Tc* __restrict__ K, Tc* __restrict__ V, int ldv)
{
    __shared__ float tileK[32][33];
    __shared__ float tileV[32][33];
    int const p0 = blockIdx.x * 32;
    int const c0 = blockIdx.y * 32;
    int const tx = threadIdx.x;
    int const ty = threadIdx.y;
    int const p = p0 + tx;
    int const mySlot = p < n ? slot[p] : -1;
    for (int k = ty; k < 32; k += 8)
    {
        size_t const src = static_cast<size_t>(c0 + k) * n + p;
        float const kv = p < n ? toFloat(phi[src]) : 0.f;
        float const vv = p < n ? toFloat(g[src]) : 0.f;
        tileK[k][tx] = kv;
        if (kVChannelMajor)
        {
            if (mySlot >= 0)
            {
                V[static_cast<size_t>(c0 + k) * ldv + mySlot] = fromFloat<Tc>(vv);
            }
        }
        else
        {
            tileV[k][tx] = vv;
        }
    }
    __syncthreads();
    for (int k = ty; k < 32; k += 8)
    {
        int const pp = p0 + k;
        if (pp < n)
        {
            int const s = slot[pp];
            if (s >= 0)
            {
                size_t const dst = static_cast<size_t>(s) * kChannels + c0 + tx;
                K[dst] = fromFloat<Tc>(tileK[tx][k]);
                if (!kVChannelMajor)
                {
                    V[dst] = fromFloat<Tc>(tileV[tx][k]);
                }
            }
        }
    }
}

// Zeroes keys [count, roundUp(count, 64)) so that padded tiles hold finite values.
template <typename Tc, bool kVChannelMajor>
__global__ void zeroKeyTailKernel(Tc* __restrict__ K, Tc* __restrict__ V, int ldv, int const* __restrict__ count)
{
    int const nv = *count;
    int const end = (nv + kKeyPad - 1) / kKeyPad * kKeyPad;
    int const idx = blockIdx.x * blockDim.x + threadIdx.x;
    int const r = idx / kChannels;
    int const c = idx % kChannels;
    if (r < kKeyPad && nv + r < end)
    {
        size_t const key = static_cast<size_t>(nv + r);
        K[key * kChannels + c] = fromFloat<Tc>(0.f);
        if (kVChannelMajor)
        {
            V[static_cast<size_t>(c) * ldv + key] = fromFloat<Tc>(0.f);
        }
        else
        {
            V[key * kChannels + c] = fromFloat<Tc>(0.f);
        }
    }
}

template <typename Tio>
__device__ void zeroQueryTile(Tio* __restrict__ out, int q0, int rows, int n)
{
    for (int idx = threadIdx.x; idx < rows * kChannels; idx += blockDim.x)
    {
        int const c = idx / rows;
        int const r = idx % rows;
        if (q0 + r < n)
        {
            out[static_cast<size_t>(c) * n + q0 + r] = fromFloat<Tio>(0.f);
        }
    }
}

// ------------------------------------------------------------------------------------------
// Attention, fp16 storage / fp32 accumulation on tensor cores (sm_80+)
// ------------------------------------------------------------------------------------------
__device__ __forceinline__ uint32_t smemAddress(void const* p)
{
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void ldmatrixX4(uint32_t (&r)[4], __half const* p)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smemAddress(p))
                 : "memory");
}

__device__ __forceinline__ void ldmatrixX2(uint32_t (&r)[2], __half const* p)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];\n"
                 : "=r"(r[0]), "=r"(r[1])
                 : "r"(smemAddress(p))
                 : "memory");
}

// D = A(16x16, row) * B(16x8, col) + D, fp16 inputs, fp32 accumulators.
__device__ __forceinline__ void mma16816(float (&d)[4], uint32_t const (&a)[4], uint32_t b0, uint32_t b1)
{
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ void cpAsync16(void* smemDst, void const* globalSrc)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smemAddress(smemDst)), "l"(globalSrc)
                 : "memory");
}

__device__ __forceinline__ void cpAsyncCommit()
{
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}

template <int kPending>
__device__ __forceinline__ void cpAsyncWait()
{
    asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
}

// Tile geometry of the tensor-core kernel. S phase: warp w computes a 16 x kSW block of the
// BQ x BK score tile; PV phase: warp w owns output channels [w*kCW, (w+1)*kCW) of all BQ rows.
template <int BQ, int BK, int NW, bool kSeparateKV>
struct TcConfig
{
    static constexpr int kThreads = NW * 32;
    static constexpr int kQld = kChannels + 8; // halves per Q / K row in shared memory (padding: no bank conflicts)
    static constexpr int kVld = BK + 8;        // halves per V^T row and per P row
    static constexpr int kSW = BQ * BK / (16 * NW);
    static constexpr int kNT = kSW / 8;
    static constexpr int kWPR = BK / kSW;
    static constexpr int kCW = kChannels / NW;
    static constexpr int kNTO = kCW / 8;
    static constexpr int kMT = BQ / 16;
    static constexpr size_t kQBytes = size_t(BQ) * kQld * 2;
    static constexpr size_t kKBytes = size_t(BK) * kQld * 2;
    static constexpr size_t kVBytes = size_t(kChannels) * kVld * 2;
    static constexpr size_t kKVBytes = kSeparateKV ? kKBytes + kVBytes : (kKBytes > kVBytes ? kKBytes : kVBytes);
    static constexpr size_t kPBytes = size_t(BQ) * kVld * 2;
    static constexpr size_t kRedBytes = size_t(BQ) * kWPR * 4 * 2;
    static constexpr size_t kRowBytes = size_t(BQ) * 4 * 3;
    static constexpr size_t kSmem = kQBytes + kKVBytes + kPBytes + kRedBytes + kRowBytes;

    static_assert(BQ % 16 == 0 && BK % 16 == 0, "tiles are multiples of 16");
    static_assert(kKeyPad % BK == 0, "key padding must cover whole tiles");
    static_assert(kSW % 8 == 0 && kSW >= 8 && (kNT == 1 || kNT % 2 == 0), "S columns per warp");
    static_assert(kWPR * (BQ / 16) == NW, "S phase uses every warp");
    static_assert(kNTO % 2 == 0, "PV phase loads B fragments in pairs");
    static_assert(kQBytes % 16 == 0 && kKBytes % 16 == 0 && kVBytes % 16 == 0 && kPBytes % 16 == 0,
        "16-byte aligned shared regions");
};

template <int BQ, int BK, int NW, bool kSeparateKV, typename Tio>
__global__ void __launch_bounds__(NW * 32, 1) attentionTcKernel(Tio const* __restrict__ theta,
    __half const* __restrict__ K, __half const* __restrict__ Vt, int ldv, int const* __restrict__ count, int n,
    Tio* __restrict__ out)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    using Cfg = TcConfig<BQ, BK, NW, kSeparateKV>;
    extern __shared__ __align__(16) unsigned char smem[];
    __half* Qs = reinterpret_cast<__half*>(smem);
    __half* Ks = reinterpret_cast<__half*>(smem + Cfg::kQBytes);
    __half* Vs = kSeparateKV ? reinterpret_cast<__half*>(smem + Cfg::kQBytes + Cfg::kKBytes) : Ks;
    __half* Ps = reinterpret_cast<__half*>(smem + Cfg::kQBytes + Cfg::kKVBytes);
    float* redMax = reinterpret_cast<float*>(smem + Cfg::kQBytes + Cfg::kKVBytes + Cfg::kPBytes);
    float* redSum = redMax + BQ * Cfg::kWPR;
    float* rowM = redSum + BQ * Cfg::kWPR;
    float* rowL = rowM + BQ;
    float* rowAlpha = rowL + BQ;

    int const tid = threadIdx.x;
    int const lane = tid & 31;
    int const warp = tid >> 5;
    int const g = lane >> 2;
    int const t = lane & 3;
    int const q0 = blockIdx.x * BQ;
    int const nv = *count;
    if (nv == 0)
    {
        zeroQueryTile(out, q0, BQ, n);
        return;
    }

    auto loadK = [&](int k0) {
        for (int idx = tid; idx < BK * (kChannels / 8); idx += Cfg::kThreads)
        {
            int const r = idx / (kChannels / 8);
            int const chunk = idx % (kChannels / 8);
            cpAsync16(Ks + r * Cfg::kQld + chunk * 8, K + static_cast<size_t>(k0 + r) * kChannels + chunk * 8);
        }
    };
    auto loadV = [&](int k0) {
        for (int idx = tid; idx < kChannels * (BK / 8); idx += Cfg::kThreads)
        {
            int const c = idx / (BK / 8);
            int const chunk = idx % (BK / 8);
            cpAsync16(Vs + c * Cfg::kVld + chunk * 8, Vt + static_cast<size_t>(c) * ldv + k0 + chunk * 8);
        }
    };

    if (kSeparateKV)
    {
        loadK(0);
        cpAsyncCommit();
    }
    // Query tile, transposed to (query, channel) and rounded to fp16.
    for (int idx = tid; idx < BQ * kChannels; idx += Cfg::kThreads)
    {
        int const c = idx / BQ;
        int const r = idx % BQ;
        int const q = q0 + r;
        Qs[r * Cfg::kQld + c] = __float2half_rn(q < n ? toFloat(theta[static_cast<size_t>(c) * n + q]) : 0.f);
    }
    if (tid < BQ)
    {
        rowM[tid] = -INFINITY;
        rowL[tid] = 0.f;
        rowAlpha[tid] = 0.f;
    }

    int const sRowBlock = warp / Cfg::kWPR;
    int const sWarpCol = warp % Cfg::kWPR;
    int const sCol0 = sWarpCol * Cfg::kSW;
    int const oCh0 = warp * Cfg::kCW;
    int const rLo = sRowBlock * 16 + g;
    int const rHi = rLo + 8;

    float acc[Cfg::kMT][Cfg::kNTO][4];
#pragma unroll
    for (int mt = 0; mt < Cfg::kMT; ++mt)
    {
#pragma unroll
        for (int nt = 0; nt < Cfg::kNTO; ++nt)
        {
#pragma unroll
            for (int e = 0; e < 4; ++e)
            {
                acc[mt][nt][e] = 0.f;
            }
        }
    }

    int const nTiles = (nv + BK - 1) / BK;
    for (int j = 0; j < nTiles; ++j)
    {
        int const k0 = j * BK;
        if (kSeparateKV)
        {
            loadV(k0);
            cpAsyncCommit();
            cpAsyncWait<1>(); // K(j) has landed
        }
        else
        {
            loadK(k0);
            cpAsyncCommit();
            cpAsyncWait<0>();
        }
        __syncthreads();

        // ---- S = Q K^T (16 x kSW per warp) ----
        float s[Cfg::kNT][4];
#pragma unroll
        for (int nt = 0; nt < Cfg::kNT; ++nt)
        {
#pragma unroll
            for (int e = 0; e < 4; ++e)
            {
                s[nt][e] = 0.f;
            }
        }
#pragma unroll 4
        for (int kk = 0; kk < kChannels; kk += 16)
        {
            uint32_t a[4];
            ldmatrixX4(a, Qs + (sRowBlock * 16 + (lane & 15)) * Cfg::kQld + kk + (lane >> 4) * 8);
            if constexpr (Cfg::kNT == 1)
            {
                uint32_t b[2];
                ldmatrixX2(b, Ks + (sCol0 + (lane & 7)) * Cfg::kQld + kk + ((lane >> 3) & 1) * 8);
                mma16816(s[0], a, b[0], b[1]);
            }
            else
            {
#pragma unroll
                for (int pair = 0; pair < Cfg::kNT / 2; ++pair)
                {
                    uint32_t b[4];
                    ldmatrixX4(b,
                        Ks + (sCol0 + pair * 16 + (lane & 7) + ((lane >> 4) << 3)) * Cfg::kQld + kk
                            + ((lane >> 3) & 1) * 8);
                    mma16816(s[2 * pair], a, b[0], b[1]);
                    mma16816(s[2 * pair + 1], a, b[2], b[3]);
                }
            }
        }

        // ---- online softmax: tile row max, exponentials (rounded to fp16), row sums ----
        float mxLo = -INFINITY;
        float mxHi = -INFINITY;
#pragma unroll
        for (int nt = 0; nt < Cfg::kNT; ++nt)
        {
            int const col = k0 + sCol0 + nt * 8 + 2 * t;
            if (col >= nv)
            {
                s[nt][0] = -INFINITY;
                s[nt][2] = -INFINITY;
            }
            if (col + 1 >= nv)
            {
                s[nt][1] = -INFINITY;
                s[nt][3] = -INFINITY;
            }
            mxLo = fmaxf(mxLo, fmaxf(s[nt][0], s[nt][1]));
            mxHi = fmaxf(mxHi, fmaxf(s[nt][2], s[nt][3]));
        }
        mxLo = fmaxf(mxLo, __shfl_xor_sync(kFull, mxLo, 1));
        mxLo = fmaxf(mxLo, __shfl_xor_sync(kFull, mxLo, 2));
        mxHi = fmaxf(mxHi, __shfl_xor_sync(kFull, mxHi, 1));
        mxHi = fmaxf(mxHi, __shfl_xor_sync(kFull, mxHi, 2));
        if (t == 0)
        {
            redMax[rLo * Cfg::kWPR + sWarpCol] = mxLo;
            redMax[rHi * Cfg::kWPR + sWarpCol] = mxHi;
        }
        __syncthreads();
        float mLo = rowM[rLo];
        float mHi = rowM[rHi];
#pragma unroll
        for (int w = 0; w < Cfg::kWPR; ++w)
        {
            mLo = fmaxf(mLo, redMax[rLo * Cfg::kWPR + w]);
            mHi = fmaxf(mHi, redMax[rHi * Cfg::kWPR + w]);
        }
        float sumLo = 0.f;
        float sumHi = 0.f;
#pragma unroll
        for (int nt = 0; nt < Cfg::kNT; ++nt)
        {
            __half2 const pLo = __floats2half2_rn(__expf(s[nt][0] - mLo), __expf(s[nt][1] - mLo));
            __half2 const pHi = __floats2half2_rn(__expf(s[nt][2] - mHi), __expf(s[nt][3] - mHi));
            int const col = sCol0 + nt * 8 + 2 * t;
            *reinterpret_cast<__half2*>(Ps + rLo * Cfg::kVld + col) = pLo;
            *reinterpret_cast<__half2*>(Ps + rHi * Cfg::kVld + col) = pHi;
            float2 const fLo = __half22float2(pLo);
            float2 const fHi = __half22float2(pHi);
            sumLo += fLo.x + fLo.y;
            sumHi += fHi.x + fHi.y;
        }
        sumLo += __shfl_xor_sync(kFull, sumLo, 1);
        sumLo += __shfl_xor_sync(kFull, sumLo, 2);
        sumHi += __shfl_xor_sync(kFull, sumHi, 1);
        sumHi += __shfl_xor_sync(kFull, sumHi, 2);
        if (t == 0)
        {
            redSum[rLo * Cfg::kWPR + sWarpCol] = sumLo;
            redSum[rHi * Cfg::kWPR + sWarpCol] = sumHi;
        }
        __syncthreads();
        if (tid < BQ)
        {
            float const mOld = rowM[tid];
            float mNew = mOld;
            float tileSum = 0.f;
#pragma unroll
            for (int w = 0; w < Cfg::kWPR; ++w)
            {
                mNew = fmaxf(mNew, redMax[tid * Cfg::kWPR + w]);
                tileSum += redSum[tid * Cfg::kWPR + w];
            }
            float const alpha = mOld == -INFINITY ? 0.f : __expf(mOld - mNew);
            rowL[tid] = rowL[tid] * alpha + tileSum;
            rowM[tid] = mNew;
            rowAlpha[tid] = alpha;
        }
        // Every warp is past its last read of Ks: the next K tile (or this V tile, with one
        // shared buffer) may be loaded now.
        if (kSeparateKV)
        {
            if (j + 1 < nTiles)
            {
                loadK(k0 + BK);
            }
            cpAsyncCommit();
            cpAsyncWait<1>(); // V(j) has landed
        }
        else
        {
            loadV(k0);
            cpAsyncCommit();
            cpAsyncWait<0>();
        }
        __syncthreads();

        // ---- O = diag(alpha) O + P V ----
#pragma unroll
        for (int mt = 0; mt < Cfg::kMT; ++mt)
        {
            float const aLo = rowAlpha[mt * 16 + g];
            float const aHi = rowAlpha[mt * 16 + g + 8];
#pragma unroll
            for (int nt = 0; nt < Cfg::kNTO; ++nt)
            {
                acc[mt][nt][0] *= aLo;
                acc[mt][nt][1] *= aLo;
                acc[mt][nt][2] *= aHi;
                acc[mt][nt][3] *= aHi;
            }
        }
#pragma unroll
        for (int kk = 0; kk < BK; kk += 16)
        {
            uint32_t a[Cfg::kMT][4];
#pragma unroll
            for (int mt = 0; mt < Cfg::kMT; ++mt)
            {
                ldmatrixX4(a[mt], Ps + (mt * 16 + (lane & 15)) * Cfg::kVld + kk + (lane >> 4) * 8);
            }
#pragma unroll
            for (int pair = 0; pair < Cfg::kNTO / 2; ++pair)
            {
                uint32_t b[4];
                ldmatrixX4(b,
                    Vs + (oCh0 + pair * 16 + (lane & 7) + ((lane >> 4) << 3)) * Cfg::kVld + kk
                        + ((lane >> 3) & 1) * 8);
#pragma unroll
                for (int mt = 0; mt < Cfg::kMT; ++mt)
                {
                    mma16816(acc[mt][2 * pair], a[mt], b[0], b[1]);
                    mma16816(acc[mt][2 * pair + 1], a[mt], b[2], b[3]);
                }
            }
        }
        __syncthreads(); // V / P buffers are free for the next tile
    }

    // ---- normalise and store (out is channel-major: out[c * n + q]) ----
#pragma unroll
    for (int mt = 0; mt < Cfg::kMT; ++mt)
    {
        int const rowLo = mt * 16 + g;
        int const rowHi = rowLo + 8;
        float const invLo = 1.f / rowL[rowLo];
        float const invHi = 1.f / rowL[rowHi];
        int const qLo = q0 + rowLo;
        int const qHi = q0 + rowHi;
#pragma unroll
        for (int nt = 0; nt < Cfg::kNTO; ++nt)
        {
            size_t const c = static_cast<size_t>(oCh0 + nt * 8 + 2 * t);
            if (qLo < n)
            {
                out[c * n + qLo] = fromFloat<Tio>(acc[mt][nt][0] * invLo);
                out[(c + 1) * n + qLo] = fromFloat<Tio>(acc[mt][nt][1] * invLo);
            }
            if (qHi < n)
            {
                out[c * n + qHi] = fromFloat<Tio>(acc[mt][nt][2] * invHi);
                out[(c + 1) * n + qHi] = fromFloat<Tio>(acc[mt][nt][3] * invHi);
            }
        }
    }
#else
    // Never launched below sm_80: the host side checks the compute capability first.
    (void) theta;
    (void) K;
    (void) Vt;
    (void) ldv;
    (void) count;
    (void) n;
    (void) out;
#endif
}

// ------------------------------------------------------------------------------------------
// Attention, fp32 SIMT (reference accuracy). 32 queries x 32 keys per step, 8 warps; warp w
// owns query rows 4w..4w+3 in both phases, so the row statistics live in registers.
// ------------------------------------------------------------------------------------------
constexpr int kFQ = 32;        // queries per CTA
constexpr int kFK = 32;        // keys per tile
constexpr int kFChunk = 128;   // channels per K / V chunk in shared memory
constexpr int kFThreads = 256;
constexpr int kFQld = kChannels + 4;
constexpr int kFKld = kFChunk + 4;
constexpr int kFPld = kFQ + 4;
constexpr size_t kFSmem = (size_t(kFQ) * kFQld + size_t(kFK) * kFKld + size_t(kFK) * kFPld) * sizeof(float);

__device__ __forceinline__ float warpMax(float v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
    {
        v = fmaxf(v, __shfl_xor_sync(kFull, v, o));
    }
    return v;
}

__device__ __forceinline__ float warpSum(float v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
    {
        v += __shfl_xor_sync(kFull, v, o);
    }
    return v;
}

template <typename Tio>
__global__ void __launch_bounds__(kFThreads, 2) attentionF32Kernel(Tio const* __restrict__ theta,
    float const* __restrict__ K, float const* __restrict__ V, int const* __restrict__ count, int n,
    Tio* __restrict__ out)
{
    extern __shared__ __align__(16) unsigned char smem[];
    float* Qs = reinterpret_cast<float*>(smem);
    float* KVs = Qs + kFQ * kFQld;
    float* Pt = KVs + kFK * kFKld; // P transposed: Pt[key][row]

    int const tid = threadIdx.x;
    int const lane = tid & 31;
    int const warp = tid >> 5;
    int const q0 = blockIdx.x * kFQ;
    int const r0 = warp * 4;
    int const nv = *count;
    if (nv == 0)
    {
        zeroQueryTile(out, q0, kFQ, n);
        return;
    }
    for (int idx = tid; idx < kFQ * kChannels; idx += kFThreads)
    {
        int const c = idx / kFQ;
        int const r = idx % kFQ;
        int const q = q0 + r;
        Qs[r * kFQld + c] = q < n ? toFloat(theta[static_cast<size_t>(c) * n + q]) : 0.f;
    }

    float m[4];
    float l[4];
    float acc[kChannels / kFChunk][4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
    {
        m[i] = -INFINITY;
        l[i] = 0.f;
    }
#pragma unroll
    for (int c = 0; c < kChannels / kFChunk; ++c)
    {
#pragma unroll
        for (int i = 0; i < 4; ++i)
        {
#pragma unroll
            for (int e = 0; e < 4; ++e)
            {
                acc[c][i][e] = 0.f;
            }
        }
    }

    auto loadChunk = [&](float const* src, int k0, int c) {
        for (int idx = tid; idx < kFK * (kFChunk / 4); idx += kFThreads)
        {
            int const r = idx / (kFChunk / 4);
            int const c4 = idx % (kFChunk / 4);
            float4 const v
                = *reinterpret_cast<float4 const*>(src + static_cast<size_t>(k0 + r) * kChannels + c * kFChunk + c4 * 4);
            *reinterpret_cast<float4*>(KVs + r * kFKld + c4 * 4) = v;
        }
    };

    int const nTiles = (nv + kFK - 1) / kFK;
    for (int j = 0; j < nTiles; ++j)
    {
        int const k0 = j * kFK;
        float s[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
        for (int c = 0; c < kChannels / kFChunk; ++c)
        {
            __syncthreads();
            loadChunk(K, k0, c);
            __syncthreads();
#pragma unroll 4
            for (int dd = 0; dd < kFChunk; dd += 4)
            {
                float4 const kv = *reinterpret_cast<float4 const*>(KVs + lane * kFKld + dd);
#pragma unroll
                for (int i = 0; i < 4; ++i)
                {
                    float4 const qv = *reinterpret_cast<float4 const*>(Qs + (r0 + i) * kFQld + c * kFChunk + dd);
                    s[i] = fmaf(qv.x, kv.x, s[i]);
                    s[i] = fmaf(qv.y, kv.y, s[i]);
                    s[i] = fmaf(qv.z, kv.z, s[i]);
                    s[i] = fmaf(qv.w, kv.w, s[i]);
                }
            }
        }
        bool const keyValid = k0 + lane < nv;
        float alpha[4];
#pragma unroll
        for (int i = 0; i < 4; ++i)
        {
            float const si = keyValid ? s[i] : -INFINITY;
            float const mNew = fmaxf(m[i], warpMax(si));
            float const p = keyValid ? expf(si - mNew) : 0.f;
            float const pSum = warpSum(p);
            alpha[i] = m[i] == -INFINITY ? 0.f : expf(m[i] - mNew);
            l[i] = l[i] * alpha[i] + pSum;
            m[i] = mNew;
            Pt[lane * kFPld + r0 + i] = p;
        }
        __syncwarp();
#pragma unroll
        for (int c = 0; c < kChannels / kFChunk; ++c)
        {
#pragma unroll
            for (int i = 0; i < 4; ++i)
            {
#pragma unroll
                for (int e = 0; e < 4; ++e)
                {
                    acc[c][i][e] *= alpha[i];
                }
            }
        }
#pragma unroll
        for (int c = 0; c < kChannels / kFChunk; ++c)
        {
            __syncthreads();
            loadChunk(V, k0, c);
            __syncthreads();
#pragma unroll 4
            for (int kk = 0; kk < kFK; ++kk)
            {
                float4 const pv = *reinterpret_cast<float4 const*>(Pt + kk * kFPld + r0);
                float4 const vv = *reinterpret_cast<float4 const*>(KVs + kk * kFKld + lane * 4);
                float const pr[4] = {pv.x, pv.y, pv.z, pv.w};
#pragma unroll
                for (int i = 0; i < 4; ++i)
                {
                    acc[c][i][0] = fmaf(pr[i], vv.x, acc[c][i][0]);
                    acc[c][i][1] = fmaf(pr[i], vv.y, acc[c][i][1]);
                    acc[c][i][2] = fmaf(pr[i], vv.z, acc[c][i][2]);
                    acc[c][i][3] = fmaf(pr[i], vv.w, acc[c][i][3]);
                }
            }
        }
        __syncwarp(); // Pt rows of this warp are rewritten by the next tile
    }

#pragma unroll
    for (int i = 0; i < 4; ++i)
    {
        int const q = q0 + r0 + i;
        if (q < n)
        {
            float const inv = 1.f / l[i];
#pragma unroll
            for (int c = 0; c < kChannels / kFChunk; ++c)
            {
#pragma unroll
                for (int e = 0; e < 4; ++e)
                {
                    size_t const ch = static_cast<size_t>(c * kFChunk + lane * 4 + e);
                    out[ch * n + q] = fromFloat<Tio>(acc[c][i][e] * inv);
                }
            }
        }
    }
}

// ------------------------------------------------------------------------------------------
// Attention host side
// ------------------------------------------------------------------------------------------
using LargeCfg = TcConfig<64, 64, 16, true>;
using MediumCfg = TcConfig<64, 32, 16, true>;
using SmallCfg = TcConfig<32, 32, 8, false>;

struct DeviceInfo
{
    int device = 0;
    int major = 0;
    int minor = 0;
    int smemOptin = 0;
};

int queryDevice(DeviceInfo& info)
{
    cudaError_t e = cudaGetDevice(&info.device);
    if (e == cudaSuccess)
    {
        e = cudaDeviceGetAttribute(&info.major, cudaDevAttrComputeCapabilityMajor, info.device);
    }
    if (e == cudaSuccess)
    {
        e = cudaDeviceGetAttribute(&info.minor, cudaDevAttrComputeCapabilityMinor, info.device);
    }
    if (e == cudaSuccess)
    {
        e = cudaDeviceGetAttribute(&info.smemOptin, cudaDevAttrMaxSharedMemoryPerBlockOptin, info.device);
    }
    return cudaStatus(e);
}

int resolveCompute(int ioDtype, int compute)
{
    if (compute == TRTR_COMPUTE_AUTO)
    {
        return ioDtype == TRTR_FLOAT16 ? TRTR_COMPUTE_FP16 : TRTR_COMPUTE_FP32;
    }
    return compute;
}

// Picks the tile configuration (TRTR_CONFIG_*), or 0 when none fits.
int chooseTcConfig(DeviceInfo const& info)
{
    int const forced = gForcedConfig.load();
    size_t const smem = static_cast<size_t>(info.smemOptin);
    if (forced == TRTR_CONFIG_LARGE)
    {
        return smem >= LargeCfg::kSmem ? TRTR_CONFIG_LARGE : 0;
    }
    if (forced == TRTR_CONFIG_MEDIUM)
    {
        return smem >= MediumCfg::kSmem ? TRTR_CONFIG_MEDIUM : 0;
    }
    if (forced == TRTR_CONFIG_SMALL)
    {
        return smem >= SmallCfg::kSmem ? TRTR_CONFIG_SMALL : 0;
    }
    if (smem >= LargeCfg::kSmem)
    {
        return TRTR_CONFIG_LARGE;
    }
    if (smem >= MediumCfg::kSmem)
    {
        return TRTR_CONFIG_MEDIUM;
    }
    if (smem >= SmallCfg::kSmem)
    {
        return TRTR_CONFIG_SMALL;
    }
    return 0;
}

struct AttentionWorkspace
{
    unsigned char* flags;
    int* slot;
    Compaction scan;
    int* count;
    void* keys;
    void* values;
};

size_t attentionWorkspace(int positions, int compute, AttentionWorkspace* layout, void* base)
{
    size_t const n = static_cast<size_t>(positions);
    size_t const nPad = alignUp(n, kKeyPad);
    size_t const nBlocks = static_cast<size_t>(ceilDiv(positions, kScanBlock));
    size_t const elem = compute == TRTR_COMPUTE_FP16 ? 2 : 4;
    size_t const sizes[] = {n, n * 4, nBlocks * 4, nBlocks * 4, 4, nPad * kChannels * elem, nPad * kChannels * elem};
    size_t offsets[7];
    size_t total = 0;
    for (int i = 0; i < 7; ++i)
    {
        offsets[i] = total;
        total += alignUp(sizes[i], kAlign);
    }
    if (layout != nullptr)
    {
        unsigned char* b = static_cast<unsigned char*>(base);
        layout->flags = b + offsets[0];
        layout->slot = reinterpret_cast<int*>(b + offsets[1]);
        layout->scan.blockCounts = reinterpret_cast<int*>(b + offsets[2]);
        layout->scan.blockOffsets = reinterpret_cast<int*>(b + offsets[3]);
        layout->count = reinterpret_cast<int*>(b + offsets[4]);
        layout->keys = b + offsets[5];
        layout->values = b + offsets[6];
    }
    return total;
}

// cudaFuncSetAttribute once per (device, kernel): launches stay free of host-side attribute
// calls (cheap, and nothing but kernel launches while a stream is being captured into a graph).
constexpr int kMaxDevices = 64;
std::atomic<uint32_t> gSmemConfigured[kMaxDevices];

template <typename Kernel>
int ensureDynamicSmem(Kernel kernel, size_t bytes, int device, uint32_t bit)
{
    bool const cached = device >= 0 && device < kMaxDevices;
    if (cached && (gSmemConfigured[device].load() & bit) != 0)
    {
        return TRTR_OK;
    }
    cudaError_t const e
        = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
    if (e != cudaSuccess)
    {
        return cudaStatus(e);
    }
    if (cached)
    {
        gSmemConfigured[device].fetch_or(bit);
    }
    return TRTR_OK;
}

template <typename Tio>
constexpr uint32_t ioBit()
{
    return sizeof(Tio) == 2 ? 1u : 0u;
}

template <typename Cfg, int BQ, int BK, int NW, bool kSep, typename Tio>
int launchTc(Tio const* theta, __half const* K, __half const* Vt, int ldv, int const* count, int n, Tio* out,
    int device, int config, cudaStream_t stream)
{
    auto kernel = attentionTcKernel<BQ, BK, NW, kSep, Tio>;
    int const status = ensureDynamicSmem(kernel, Cfg::kSmem, device, 1u << (2 * config + ioBit<Tio>()));
    if (status != TRTR_OK)
    {
        return status;
    }
    kernel<<<ceilDiv(n, BQ), Cfg::kThreads, Cfg::kSmem, stream>>>(theta, K, Vt, ldv, count, n, out);
    TRTR_RETURN_IF_LAUNCH_FAILED();
    return TRTR_OK;
}

template <typename Tio>
int maskedAttention(Tio const* theta, Tio const* phi, Tio const* g, Tio const* valid, Tio* out, int batch, int n,
    int compute, void* workspace, cudaStream_t stream)
{
    DeviceInfo info;
    int status = queryDevice(info);
    if (status != TRTR_OK)
    {
        return status;
    }
    int config = 0;
    if (compute == TRTR_COMPUTE_FP16)
    {
        if (info.major < 8)
        {
            return TRTR_ERR_UNSUPPORTED;
        }
        config = chooseTcConfig(info);
        if (config == 0)
        {
            return TRTR_ERR_UNSUPPORTED;
        }
    }
    else if (static_cast<size_t>(info.smemOptin) < kFSmem)
    {
        return TRTR_ERR_UNSUPPORTED;
    }
    else
    {
        status = ensureDynamicSmem(attentionF32Kernel<Tio>, kFSmem, info.device, 1u << (8 + ioBit<Tio>()));
        if (status != TRTR_OK)
        {
            return status;
        }
    }

    AttentionWorkspace ws;
    attentionWorkspace(n, compute, &ws, workspace);
    int const ldv = static_cast<int>(alignUp(static_cast<size_t>(n), kKeyPad));
    size_t const stride = static_cast<size_t>(kChannels) * n;
    for (int b = 0; b < batch; ++b)
    {
        Tio const* th = theta + b * stride;
        Tio const* ph = phi + b * stride;
        Tio const* gg = g + b * stride;
        Tio* o = out + b * stride;
        validFlagsKernel<<<ceilDiv(n, 256), 256, 0, stream>>>(valid + static_cast<size_t>(b) * n, n, ws.flags);
        TRTR_RETURN_IF_LAUNCH_FAILED();
        status = compact(ws.flags, n, 1, ws.scan, ws.slot, nullptr, ws.count, stream);
        if (status != TRTR_OK)
        {
            return status;
        }
        dim3 const packGrid(ceilDiv(n, 32), kChannels / 32);
        dim3 const packBlock(32, 8);
        int const tailBlocks = kKeyPad * kChannels / 256;
        if (compute == TRTR_COMPUTE_FP16)
        {
            __half* K = static_cast<__half*>(ws.keys);
            __half* Vt = static_cast<__half*>(ws.values);
            packKeysKernel<Tio, __half, true><<<packGrid, packBlock, 0, stream>>>(ph, gg, ws.slot, n, K, Vt, ldv);
            TRTR_RETURN_IF_LAUNCH_FAILED();
            zeroKeyTailKernel<__half, true><<<tailBlocks, 256, 0, stream>>>(K, Vt, ldv, ws.count);
            TRTR_RETURN_IF_LAUNCH_FAILED();
            if (config == TRTR_CONFIG_LARGE)
            {
                status = launchTc<LargeCfg, 64, 64, 16, true>(th, K, Vt, ldv, ws.count, n, o, info.device, TRTR_CONFIG_LARGE, stream);
            }
            else if (config == TRTR_CONFIG_MEDIUM)
            {
                status = launchTc<MediumCfg, 64, 32, 16, true>(th, K, Vt, ldv, ws.count, n, o, info.device, TRTR_CONFIG_MEDIUM, stream);
            }
            else
            {
                status = launchTc<SmallCfg, 32, 32, 8, false>(th, K, Vt, ldv, ws.count, n, o, info.device, TRTR_CONFIG_SMALL, stream);
            }
            if (status != TRTR_OK)
            {
                return status;
            }
        }
        else
        {
            float* K = static_cast<float*>(ws.keys);
            float* V = static_cast<float*>(ws.values);
            packKeysKernel<Tio, float, false><<<packGrid, packBlock, 0, stream>>>(ph, gg, ws.slot, n, K, V, ldv);
            TRTR_RETURN_IF_LAUNCH_FAILED();
            zeroKeyTailKernel<float, false><<<tailBlocks, 256, 0, stream>>>(K, V, ldv, ws.count);
            TRTR_RETURN_IF_LAUNCH_FAILED();
            attentionF32Kernel<Tio><<<ceilDiv(n, kFQ), kFThreads, kFSmem, stream>>>(th, K, V, ws.count, n, o);
            TRTR_RETURN_IF_LAUNCH_FAILED();
        }
    }
    return TRTR_OK;
}

// ------------------------------------------------------------------------------------------
// Patch match
// ------------------------------------------------------------------------------------------
constexpr int kPTile = 64;  // hole patches x key patches per GEMM tile
constexpr int kPK = 16;     // reduction step
constexpr int kPSplit = 64; // key ranges per hole tile (merged in index order)
constexpr float kHoleFraction = 0.6f;

template <typename T>
__global__ void patchFlagsKernel(T const* __restrict__ hole, int height, int width, int patch,
    unsigned char* __restrict__ flags)
{
    int const pw = width / patch;
    int const count = (height / patch) * pw;
    int const p = blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= count)
    {
        return;
    }
    int const py = p / pw;
    int const px = p % pw;
    float sum = 0.f;
    for (int i = 0; i < patch; ++i)
    {
        for (int j = 0; j < patch; ++j)
        {
            sum += toFloat(hole[static_cast<size_t>(py * patch + i) * width + px * patch + j]);
        }
    }
    flags[p] = sum / static_cast<float>(patch * patch) > kHoleFraction ? 1 : 0;
}

// Rows of P: hole patches first (rank among holes), then key patches (counts[0] + rank among keys).
template <typename T>
__global__ void packPatchesKernel(T const* __restrict__ x, int channels, int height, int width, int patch,
    unsigned char const* __restrict__ flags, int const* __restrict__ slotHole, int const* __restrict__ slotKey,
    int const* __restrict__ counts, float* __restrict__ P)
{
    size_t const total = static_cast<size_t>(channels) * height * width;
    size_t const dim = static_cast<size_t>(channels) * patch * patch;
    int const holes = counts[0];
    int const pw = width / patch;
    for (size_t idx = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; idx < total;
         idx += static_cast<size_t>(gridDim.x) * blockDim.x)
    {
        int const xx = static_cast<int>(idx % width);
        int const y = static_cast<int>((idx / width) % height);
        int const c = static_cast<int>(idx / (static_cast<size_t>(width) * height));
        int const p = (y / patch) * pw + xx / patch;
        size_t const e = static_cast<size_t>(c) * patch * patch + (y % patch) * patch + xx % patch;
        size_t const row = flags[p] ? static_cast<size_t>(slotHole[p]) : static_cast<size_t>(holes) + slotKey[p];
        P[row * dim + e] = toFloat(x[idx]);
    }
}

__global__ void __launch_bounds__(256) keyInverseNormKernel(
    float const* __restrict__ P, int const* __restrict__ counts, int dim, float* __restrict__ invNorm)
{
    __shared__ float partial[256];
    int const k = blockIdx.x;
    int const holes = counts[0];
    if (k >= counts[1])
    {
        return;
    }
    float const* row = P + (static_cast<size_t>(holes) + k) * dim;
    float ss = 0.f;
    for (int e = threadIdx.x; e < dim; e += 256)
    {
        ss = fmaf(row[e], row[e], ss);
    }
    partial[threadIdx.x] = ss;
    __syncthreads();
    for (int half = 128; half > 0; half >>= 1)
    {
        if (threadIdx.x < half)
        {
            partial[threadIdx.x] += partial[threadIdx.x + half];
        }
        __syncthreads();
    }
    if (threadIdx.x == 0)
    {
        invNorm[k] = 1.f / fmaxf(sqrtf(partial[0]), 1e-12f);
    }
}

__device__ __forceinline__ bool better(float v, int i, float bestV, int bestI)
{
    return v > bestV || (v == bestV && i < bestI);
}

// Block (hole tile, split): for its 64 hole patches, the best key among the key tiles of
// split `blockIdx.y`; similarity = dot(hole, key) / |key| (the hole's norm does not change the arg-max).
__global__ void __launch_bounds__(256) patchSimilarityKernel(float const* __restrict__ P,
    int const* __restrict__ counts, int dim, float const* __restrict__ invNorm, int stride,
    float* __restrict__ partVal, int* __restrict__ partIdx)
{
    __shared__ __align__(16) float As[kPK][kPTile + 4];
    __shared__ __align__(16) float Bs[kPK][kPTile + 4];
    int const holes = counts[0];
    int const keys = counts[1];
    int const qt = blockIdx.x;
    int const split = blockIdx.y;
    if (qt * kPTile >= holes || keys == 0)
    {
        return;
    }
    int const keyTiles = (keys + kPTile - 1) / kPTile;
    int const perSplit = (keyTiles + kPSplit - 1) / kPSplit;
    int const ktBegin = split * perSplit;
    int const ktEnd = min(keyTiles, ktBegin + perSplit);
    float const* A = P;
    float const* B = P + static_cast<size_t>(holes) * dim;
    int const tid = threadIdx.x;
    int const tx = tid & 15;
    int const ty = tid >> 4;
    int const loadRow = tid >> 2;
    int const loadCol = (tid & 3) * 4;

    float bestV[4];
    int bestI[4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
    {
        bestV[i] = -INFINITY;
        bestI[i] = INT_MAX;
    }
    for (int kt = ktBegin; kt < ktEnd; ++kt)
    {
        float acc[4][4];
#pragma unroll
        for (int i = 0; i < 4; ++i)
        {
#pragma unroll
            for (int j = 0; j < 4; ++j)
            {
                acc[i][j] = 0.f;
            }
        }
        int const aRow = qt * kPTile + loadRow;
        int const bRow = kt * kPTile + loadRow;
        for (int e0 = 0; e0 < dim; e0 += kPK)
        {
            float4 const zero = make_float4(0.f, 0.f, 0.f, 0.f);
            float4 const av
                = aRow < holes ? *reinterpret_cast<float4 const*>(A + static_cast<size_t>(aRow) * dim + e0 + loadCol) : zero;
            float4 const bv
                = bRow < keys ? *reinterpret_cast<float4 const*>(B + static_cast<size_t>(bRow) * dim + e0 + loadCol) : zero;
            __syncthreads();
            As[loadCol + 0][loadRow] = av.x;
            As[loadCol + 1][loadRow] = av.y;
            As[loadCol + 2][loadRow] = av.z;
            As[loadCol + 3][loadRow] = av.w;
            Bs[loadCol + 0][loadRow] = bv.x;
            Bs[loadCol + 1][loadRow] = bv.y;
            Bs[loadCol + 2][loadRow] = bv.z;
            Bs[loadCol + 3][loadRow] = bv.w;
            __syncthreads();
#pragma unroll
            for (int k = 0; k < kPK; ++k)
            {
                float4 const a = *reinterpret_cast<float4 const*>(&As[k][ty * 4]);
                float4 const b = *reinterpret_cast<float4 const*>(&Bs[k][tx * 4]);
                float const ar[4] = {a.x, a.y, a.z, a.w};
                float const br[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
                for (int i = 0; i < 4; ++i)
                {
#pragma unroll
                    for (int j = 0; j < 4; ++j)
                    {
                        acc[i][j] = fmaf(ar[i], br[j], acc[i][j]);
                    }
                }
            }
        }
#pragma unroll
        for (int j = 0; j < 4; ++j)
        {
            int const col = kt * kPTile + tx * 4 + j;
            if (col < keys)
            {
                float const inv = invNorm[col];
#pragma unroll
                for (int i = 0; i < 4; ++i)
                {
                    float const v = acc[i][j] * inv;
                    if (v > bestV[i])
                    {
                        bestV[i] = v;
                        bestI[i] = col;
                    }
                }
            }
        }
    }
    // The 16 threads of a row group are 16 consecutive lanes of one warp.
#pragma unroll
    for (int i = 0; i < 4; ++i)
    {
        float v = bestV[i];
        int id = bestI[i];
#pragma unroll
        for (int o = 8; o > 0; o >>= 1)
        {
            float const ov = __shfl_xor_sync(kFull, v, o);
            int const oi = __shfl_xor_sync(kFull, id, o);
            if (better(ov, oi, v, id))
            {
                v = ov;
                id = oi;
            }
        }
        int const q = qt * kPTile + ty * 4 + i;
        if (tx == 0 && q < holes)
        {
            partVal[static_cast<size_t>(split) * stride + q] = v;
            partIdx[static_cast<size_t>(split) * stride + q] = id;
        }
    }
}

__global__ void patchMergeKernel(float const* __restrict__ partVal, int const* __restrict__ partIdx,
    int const* __restrict__ counts, int stride, int const* __restrict__ keyList, int* __restrict__ bestPatch)
{
    int const h = blockIdx.x * blockDim.x + threadIdx.x;
    if (h >= counts[0] || counts[1] == 0)
    {
        return;
    }
    float v = -INFINITY;
    int id = INT_MAX;
    for (int s = 0; s < kPSplit; ++s)
    {
        float const ov = partVal[static_cast<size_t>(s) * stride + h];
        int const oi = partIdx[static_cast<size_t>(s) * stride + h];
        if (better(ov, oi, v, id))
        {
            v = ov;
            id = oi;
        }
    }
    bestPatch[h] = id == INT_MAX ? -1 : keyList[id];
}

template <typename T>
__global__ void composeKernel(T const* __restrict__ x, T* __restrict__ out, int channels, int height, int width,
    int patch, unsigned char const* __restrict__ flags, int const* __restrict__ slotHole, int const* __restrict__ counts,
    int const* __restrict__ bestPatch)
{
    bool const active = counts[0] > 0 && counts[1] > 0;
    size_t const total = static_cast<size_t>(channels) * height * width;
    int const pw = width / patch;
    for (size_t idx = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; idx < total;
         idx += static_cast<size_t>(gridDim.x) * blockDim.x)
    {
        size_t src = idx;
        if (active)
        {
            int const xx = static_cast<int>(idx % width);
            int const y = static_cast<int>((idx / width) % height);
            int const p = (y / patch) * pw + xx / patch;
            if (flags[p])
            {
                int const from = bestPatch[slotHole[p]];
                if (from >= 0)
                {
                    size_t const c = idx / (static_cast<size_t>(width) * height);
                    int const sy = (from / pw) * patch + y % patch;
                    int const sx = (from % pw) * patch + xx % patch;
                    src = (c * height + sy) * width + sx;
                }
            }
        }
        out[idx] = x[src];
    }
}

struct PatchWorkspace
{
    unsigned char* flags;
    int* slotHole;
    int* slotKey;
    int* keyList;
    Compaction scan;
    int* counts; // [holes, keys]
    float* invNorm;
    float* P;
    float* partVal;
    int* partIdx;
    int* bestPatch;
};

size_t patchWorkspace(int channels, int height, int width, int patch, PatchWorkspace* layout, void* base)
{
    size_t const L = static_cast<size_t>(height / patch) * (width / patch);
    size_t const nBlocks = static_cast<size_t>(ceilDiv(static_cast<int>(L), kScanBlock));
    size_t const elements = static_cast<size_t>(channels) * height * width;
    size_t const sizes[] = {L, L * 4, L * 4, L * 4, nBlocks * 4, nBlocks * 4, 8, L * 4, elements * 4,
        kPSplit * L * 4, kPSplit * L * 4, L * 4};
    constexpr int kParts = sizeof(sizes) / sizeof(sizes[0]);
    size_t offsets[kParts];
    size_t total = 0;
    for (int i = 0; i < kParts; ++i)
    {
        offsets[i] = total;
        total += alignUp(sizes[i], kAlign);
    }
    if (layout != nullptr)
    {
        unsigned char* b = static_cast<unsigned char*>(base);
        layout->flags = b + offsets[0];
        layout->slotHole = reinterpret_cast<int*>(b + offsets[1]);
        layout->slotKey = reinterpret_cast<int*>(b + offsets[2]);
        layout->keyList = reinterpret_cast<int*>(b + offsets[3]);
        layout->scan.blockCounts = reinterpret_cast<int*>(b + offsets[4]);
        layout->scan.blockOffsets = reinterpret_cast<int*>(b + offsets[5]);
        layout->counts = reinterpret_cast<int*>(b + offsets[6]);
        layout->invNorm = reinterpret_cast<float*>(b + offsets[7]);
        layout->P = reinterpret_cast<float*>(b + offsets[8]);
        layout->partVal = reinterpret_cast<float*>(b + offsets[9]);
        layout->partIdx = reinterpret_cast<int*>(b + offsets[10]);
        layout->bestPatch = reinterpret_cast<int*>(b + offsets[11]);
    }
    return total;
}

int gridFor(size_t elements)
{
    size_t const blocks = (elements + 255) / 256;
    return static_cast<int>(blocks < 65535 * 8 ? blocks : 65535 * 8);
}

template <typename T>
int patchMatch(T const* x, T const* hole, T* out, int batch, int channels, int height, int width, int patch,
    void* workspace, cudaStream_t stream)
{
    PatchWorkspace ws;
    patchWorkspace(channels, height, width, patch, &ws, workspace);
    int const L = (height / patch) * (width / patch);
    int const dim = channels * patch * patch;
    size_t const plane = static_cast<size_t>(height) * width;
    size_t const elements = static_cast<size_t>(channels) * plane;
    for (int b = 0; b < batch; ++b)
    {
        T const* xb = x + b * elements;
        T* ob = out + b * elements;
        patchFlagsKernel<<<ceilDiv(L, 256), 256, 0, stream>>>(hole + b * plane, height, width, patch, ws.flags);
        TRTR_RETURN_IF_LAUNCH_FAILED();
        int status = compact(ws.flags, L, 1, ws.scan, ws.slotHole, nullptr, ws.counts, stream);
        if (status == TRTR_OK)
        {
            status = compact(ws.flags, L, 0, ws.scan, ws.slotKey, ws.keyList, ws.counts + 1, stream);
        }
        if (status != TRTR_OK)
        {
            return status;
        }
        packPatchesKernel<<<gridFor(elements), 256, 0, stream>>>(
            xb, channels, height, width, patch, ws.flags, ws.slotHole, ws.slotKey, ws.counts, ws.P);
        TRTR_RETURN_IF_LAUNCH_FAILED();
        keyInverseNormKernel<<<L, 256, 0, stream>>>(ws.P, ws.counts, dim, ws.invNorm);
        TRTR_RETURN_IF_LAUNCH_FAILED();
        dim3 const simGrid(ceilDiv(L, kPTile), kPSplit);
        patchSimilarityKernel<<<simGrid, 256, 0, stream>>>(ws.P, ws.counts, dim, ws.invNorm, L, ws.partVal, ws.partIdx);
        TRTR_RETURN_IF_LAUNCH_FAILED();
        patchMergeKernel<<<ceilDiv(L, 256), 256, 0, stream>>>(
            ws.partVal, ws.partIdx, ws.counts, L, ws.keyList, ws.bestPatch);
        TRTR_RETURN_IF_LAUNCH_FAILED();
        composeKernel<<<gridFor(elements), 256, 0, stream>>>(
            xb, ob, channels, height, width, patch, ws.flags, ws.slotHole, ws.counts, ws.bestPatch);
        TRTR_RETURN_IF_LAUNCH_FAILED();
    }
    return TRTR_OK;
}

bool aligned(void const* p)
{
    return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

} // namespace
} // namespace trtr

using namespace trtr;

extern "C" TRTR_API int trtr_api_version(void)
{
    return TRTR_API_VERSION;
}

extern "C" TRTR_API char const* trtr_status_string(int status)
{
    switch (status)
    {
    case TRTR_OK: return "success";
    case TRTR_ERR_INVALID_ARGUMENT: return "invalid argument";
    case TRTR_ERR_WORKSPACE_TOO_SMALL: return "workspace too small";
    case TRTR_ERR_UNSUPPORTED: return "unsupported shape or device";
    default: break;
    }
    if (status > TRTR_ERR_CUDA_BASE)
    {
        return cudaGetErrorString(static_cast<cudaError_t>(status - TRTR_ERR_CUDA_BASE));
    }
    return "unknown status";
}

extern "C" TRTR_API int trtr_set_attention_config(int config)
{
    if (config < TRTR_CONFIG_AUTO || config > TRTR_CONFIG_SMALL)
    {
        return -1;
    }
    return gForcedConfig.exchange(config);
}

extern "C" TRTR_API int trtr_describe_attention(int io_dtype, int compute, char* buf, size_t buf_len)
{
    if (buf == nullptr || buf_len == 0)
    {
        return TRTR_ERR_INVALID_ARGUMENT;
    }
    DeviceInfo info;
    int const status = queryDevice(info);
    if (status != TRTR_OK)
    {
        std::snprintf(buf, buf_len, "no usable CUDA device: %s", trtr_status_string(status));
        return status;
    }
    compute = resolveCompute(io_dtype, compute);
    char const* io = io_dtype == TRTR_FLOAT16 ? "fp16" : "fp32";
    if (compute == TRTR_COMPUTE_FP16)
    {
        int const config = info.major >= 8 ? chooseTcConfig(info) : 0;
        char const* names[] = {"none fits", "64q x 64k, 16 warps, K/V double buffer",
            "64q x 32k, 16 warps, K/V double buffer", "32q x 32k, 8 warps, single K/V buffer"};
        size_t const smem[] = {0, LargeCfg::kSmem, MediumCfg::kSmem, SmallCfg::kSmem};
        std::snprintf(buf, buf_len, "fp16 mma.sync tensor cores (%s I/O), tile %s, %zu B shared, sm_%d%d, optin %d B",
            io, names[config], smem[config], info.major, info.minor, info.smemOptin);
        return config == 0 ? TRTR_ERR_UNSUPPORTED : TRTR_OK;
    }
    std::snprintf(buf, buf_len, "fp32 SIMT (%s I/O), tile 32q x 32k, 8 warps, %zu B shared, sm_%d%d", io, kFSmem,
        info.major, info.minor);
    return TRTR_OK;
}

extern "C" TRTR_API size_t trtr_masked_attention_workspace_size(
    int batch, int channels, int positions, int io_dtype, int compute)
{
    (void) batch;
    (void) channels;
    if (positions <= 0)
    {
        return 0;
    }
    return attentionWorkspace(positions, resolveCompute(io_dtype, compute), nullptr, nullptr);
}

extern "C" TRTR_API int trtr_masked_attention(void const* theta, void const* phi, void const* g, void const* valid,
    void* out, int batch, int channels, int positions, int io_dtype, int compute, void* workspace,
    size_t workspace_bytes, cudaStream_t stream)
{
    if (theta == nullptr || phi == nullptr || g == nullptr || valid == nullptr || out == nullptr || batch <= 0
        || positions <= 0 || (io_dtype != TRTR_FLOAT32 && io_dtype != TRTR_FLOAT16)
        || compute < TRTR_COMPUTE_AUTO || compute > TRTR_COMPUTE_FP16)
    {
        return TRTR_ERR_INVALID_ARGUMENT;
    }
    if (channels != kChannels)
    {
        return TRTR_ERR_UNSUPPORTED;
    }
    compute = resolveCompute(io_dtype, compute);
    if (workspace == nullptr || workspace_bytes < attentionWorkspace(positions, compute, nullptr, nullptr)
        || !aligned(workspace))
    {
        return TRTR_ERR_WORKSPACE_TOO_SMALL;
    }
    if (io_dtype == TRTR_FLOAT16)
    {
        return maskedAttention(static_cast<__half const*>(theta), static_cast<__half const*>(phi),
            static_cast<__half const*>(g), static_cast<__half const*>(valid), static_cast<__half*>(out), batch,
            positions, compute, workspace, stream);
    }
    return maskedAttention(static_cast<float const*>(theta), static_cast<float const*>(phi),
        static_cast<float const*>(g), static_cast<float const*>(valid), static_cast<float*>(out), batch, positions,
        compute, workspace, stream);
}

extern "C" TRTR_API size_t trtr_patch_match_workspace_size(int batch, int channels, int height, int width, int patch)
{
    (void) batch;
    if (channels <= 0 || patch <= 0 || height < patch || width < patch)
    {
        return 0;
    }
    return patchWorkspace(channels, height, width, patch, nullptr, nullptr);
}

extern "C" TRTR_API int trtr_patch_match(void const* x, void const* hole, void* out, int batch, int channels,
    int height, int width, int patch, int io_dtype, void* workspace, size_t workspace_bytes, cudaStream_t stream)
{
    if (x == nullptr || hole == nullptr || out == nullptr || x == out || batch <= 0 || channels <= 0 || patch <= 0
        || height < patch || width < patch || height % patch != 0 || width % patch != 0
        || (io_dtype != TRTR_FLOAT32 && io_dtype != TRTR_FLOAT16))
    {
        return TRTR_ERR_INVALID_ARGUMENT;
    }
    if ((channels * patch * patch) % kPK != 0)
    {
        return TRTR_ERR_UNSUPPORTED;
    }
    if (workspace == nullptr || !aligned(workspace)
        || workspace_bytes < patchWorkspace(channels, height, width, patch, nullptr, nullptr))
    {
        return TRTR_ERR_WORKSPACE_TOO_SMALL;
    }
    if (io_dtype == TRTR_FLOAT16)
    {
        return patchMatch(static_cast<__half const*>(x), static_cast<__half const*>(hole), static_cast<__half*>(out),
            batch, channels, height, width, patch, workspace, stream);
    }
    return patchMatch(static_cast<float const*>(x), static_cast<float const*>(hole), static_cast<float*>(out), batch,
        channels, height, width, patch, workspace, stream);
}
