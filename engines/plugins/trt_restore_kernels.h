/*
 * trt-restore GPU kernels: plain C entry points (trt_restore_kernels.cpp).
 *
 * They launch the Triton AOT cubins of engines/kernels/cubins (the kernels CI executes under
 * the Triton interpreter) through the CUDA driver API. The same entry points back the TensorRT
 * plugins (trt_restore_plugins.cpp) and can be called without TensorRT from any C/C++ program.
 *
 * Conventions
 *  - tensors are dense NCHW fp32 on the device; `positions` = H * W; io_dtype must be
 *    TRTR_FLOAT32 (TRTR_FLOAT16 returns TRTR_ERR_UNSUPPORTED), masks (`valid` / `hole`) too;
 *  - a GPU whose compute capability has no cubin gets TRTR_ERR_UNSUPPORTED and a status string
 *    naming it;
 *  - every call is asynchronous on `stream`, never synchronises and never allocates: the caller
 *    passes a device workspace of at least the size returned by the matching *_workspace_size
 *    function (256-byte aligned pointer); the workspace can be reused by the next call on the
 *    same stream;
 *  - results are deterministic (no atomics; fixed reduction order);
 *  - return value 0 = success; otherwise a status code, see trtr_status_string().
 */
#ifndef TRT_RESTORE_KERNELS_H
#define TRT_RESTORE_KERNELS_H

#include <stddef.h>
#include <cuda_runtime_api.h> /* cudaStream_t (the same handle as CUstream) */

#if defined(_WIN32)
#define TRTR_API __declspec(dllexport)
#else
#define TRTR_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define TRTR_API_VERSION 2

enum trtr_dtype { TRTR_FLOAT32 = 0, TRTR_FLOAT16 = 1 };

/* Arithmetic of the attention logits and value product: AUTO = the default (fp16x3: fp16 high and
 * low parts, three tensor-core products, ~fp32 accuracy), FP32 = ieee fp32 (no tensor cores),
 * FP16 = one fp16 product (fast, 0.02 off on the scratch vectors). */
enum trtr_compute { TRTR_COMPUTE_AUTO = -1, TRTR_COMPUTE_FP32 = 0, TRTR_COMPUTE_FP16 = 1 };

/* Tile configurations of the attention kernel (tests and benchmarks; AUTO = MAIN). SMALL and
 * NARROW ship in the default precision only. */
enum trtr_attention_config {
    TRTR_CONFIG_AUTO = 0,
    TRTR_CONFIG_MAIN = 1,  /* 64 queries x 32 keys x 256 output channels, 8 warps */
    TRTR_CONFIG_SMALL = 2, /* 32 queries x 32 keys x 128 output channels, 4 warps */
    TRTR_CONFIG_NARROW = 3 /* 64 queries x 32 keys x 128 output channels, 8 warps */
};

enum trtr_status {
    TRTR_OK = 0,
    TRTR_ERR_INVALID_ARGUMENT = 1,
    TRTR_ERR_WORKSPACE_TOO_SMALL = 2,
    TRTR_ERR_UNSUPPORTED = 3, /* channels != 512, fp16 tensors, no GPU, or no cubin for this GPU */
    TRTR_ERR_CUDA_BASE = 1000 /* 1000 + CUresult */
};

#define TRTR_ATTENTION_CHANNELS 512

TRTR_API int trtr_api_version(void);
/* The last failure of this thread in one line (naming e.g. the compute capability), else a generic text. */
TRTR_API const char* trtr_status_string(int status);

/* Force a tile configuration for this process (0 = automatic). Returns the previous setting, -1
 * for an unknown configuration. */
TRTR_API int trtr_set_attention_config(int config);

/* Describes what trtr_masked_attention would run on the current device for `compute`
 * (writes a NUL-terminated line into buf). Returns a status. */
TRTR_API int trtr_describe_attention(int io_dtype, int compute, char* buf, size_t buf_len);

/*
 * Masked nonlocal attention (the partial nonlocal block of the scratch mapping), as the original:
 *   theta, phi, g: (batch, channels, positions); valid: (batch, 1, positions); out like theta.
 *   p = softmax over ALL keys j of theta[b,:,i] . phi[b,:,j] (no scaling), times valid_j (> 0.5),
 *   each row divided by max(sum, 1e-12); out[b, :, i] = sum_j p_ij g[b, :, j].
 * Rows without any valid key are 0. channels must be 512. Memory: the workspace is O(positions)
 * (reused item by item), the N x N matrix is never materialised.
 */
TRTR_API size_t trtr_masked_attention_workspace_size(int batch, int channels, int positions, int io_dtype,
                                                     int compute);
TRTR_API int trtr_masked_attention(const void* theta, const void* phi, const void* g, const void* valid, void* out,
                                   int batch, int channels, int positions, int io_dtype, int compute, void* workspace,
                                   size_t workspace_bytes, cudaStream_t stream);

/*
 * HR masked patch match at patch size `patch` (8, 4 or 2: the shipped cubins).
 *   x: (batch, channels, height, width); hole: (batch, 1, height, width), binary;
 *   out like x: x with every hole patch (mean of hole over the patch > 0.6) replaced by the
 *   non-hole patch of highest cosine similarity (first index on ties). As the original's
 *   F.unfold/F.fold, only whole patches count: where height or width is not a multiple of patch,
 *   the bottom/right margins are 0 if the item has a hole patch. If it has none, out = x; if it
 *   has no non-hole patch, the hole patches keep x (margins still 0).
 * Similarities: fp16x3 split products (~fp32); the copy is exact.
 */
TRTR_API size_t trtr_patch_match_workspace_size(int batch, int channels, int height, int width, int patch);
TRTR_API int trtr_patch_match(const void* x, const void* hole, void* out, int batch, int channels, int height,
                              int width, int patch, int io_dtype, void* workspace, size_t workspace_bytes,
                              cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif /* TRT_RESTORE_KERNELS_H */
