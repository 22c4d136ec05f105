/*
 * trt-restore CUDA kernels: plain C entry points.
 *
 * The same kernels back the TensorRT plugins (trt_restore_plugins.cpp) and can be called
 * without TensorRT (ctypes from Python, or any C/C++ program) to verify them on any CUDA GPU.
 *
 * Conventions
 *  - tensors are dense NCHW on the device; `positions` = H * W;
 *  - io_dtype selects the element type of every tensor argument (TRTR_FLOAT32 or TRTR_FLOAT16),
 *    including the mask (`valid` / `hole`);
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
#include <cuda_runtime_api.h>

#if defined(_WIN32)
#define TRTR_API __declspec(dllexport)
#else
#define TRTR_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define TRTR_API_VERSION 1

enum trtr_dtype { TRTR_FLOAT32 = 0, TRTR_FLOAT16 = 1 };

/* Arithmetic of the attention: fp32 SIMT (reference accuracy) or fp16 storage with fp32
 * accumulation on tensor cores (sm_80+). AUTO: fp16 for fp16 I/O, fp32 for fp32 I/O. */
enum trtr_compute { TRTR_COMPUTE_AUTO = -1, TRTR_COMPUTE_FP32 = 0, TRTR_COMPUTE_FP16 = 1 };

/* Tile configurations of the fp16 attention kernel (for tests and benchmarks; AUTO picks the
 * largest that fits the device's shared memory). */
enum trtr_attention_config {
    TRTR_CONFIG_AUTO = 0,
    TRTR_CONFIG_LARGE = 1,  /* 64 queries x 64 keys, 16 warps, K/V double buffer (~218 KB smem: sm_90) */
    TRTR_CONFIG_MEDIUM = 2, /* 64 queries x 32 keys, 16 warps, K/V double buffer (~147 KB: sm_80/87/90) */
    TRTR_CONFIG_SMALL = 3   /* 32 queries x 32 keys, 8 warps, one K/V buffer (~77 KB: sm_86/89/120) */
};

enum trtr_status {
    TRTR_OK = 0,
    TRTR_ERR_INVALID_ARGUMENT = 1,
    TRTR_ERR_WORKSPACE_TOO_SMALL = 2,
    TRTR_ERR_UNSUPPORTED = 3, /* e.g. channels != 512 for the attention, or a GPU older than sm_80 */
    TRTR_ERR_CUDA_BASE = 1000 /* 1000 + cudaError_t */
};

#define TRTR_ATTENTION_CHANNELS 512

TRTR_API int trtr_api_version(void);
TRTR_API const char* trtr_status_string(int status);

/* Force a tile configuration of the fp16 attention kernel for this process (0 = automatic).
 * Returns the previous setting. */
TRTR_API int trtr_set_attention_config(int config);

/* Describes what trtr_masked_attention would run on the current device for `compute`
 * (writes a NUL-terminated line into buf). Returns a status. */
TRTR_API int trtr_describe_attention(int io_dtype, int compute, char* buf, size_t buf_len);

/*
 * Masked nonlocal attention (the partial nonlocal block of the scratch mapping).
 *   theta, phi, g: (batch, channels, positions); valid: (batch, 1, positions); out like theta.
 *   out[b, :, i] = sum_j softmax_{j : valid[b, j] > 0.5}(theta[b,:,i] . phi[b,:,j]) g[b, :, j]
 * (no scaling; rows of a batch item without any valid key are 0). channels must be 512.
 * Memory: the workspace is O(positions), the N x N matrix is never materialised.
 */
TRTR_API size_t trtr_masked_attention_workspace_size(int batch, int channels, int positions, int io_dtype,
                                                     int compute);
TRTR_API int trtr_masked_attention(const void* theta, const void* phi, const void* g, const void* valid, void* out,
                                   int batch, int channels, int positions, int io_dtype, int compute, void* workspace,
                                   size_t workspace_bytes, cudaStream_t stream);

/*
 * HR masked patch match at patch size `patch` (8, 4 or 2 in the HR mapping).
 *   x: (batch, channels, height, width); hole: (batch, 1, height, width), binary;
 *   out like x: x with every hole patch (mean of hole over the patch > 0.6) replaced by the
 *   non-hole patch of highest cosine similarity (first index on ties). If a batch item has no
 *   hole patch or no non-hole patch, out = x. height and width must be multiples of patch.
 * Similarities are computed in fp32 for both I/O types; the copy is exact.
 */
TRTR_API size_t trtr_patch_match_workspace_size(int batch, int channels, int height, int width, int patch);
TRTR_API int trtr_patch_match(const void* x, const void* hole, void* out, int batch, int channels, int height,
                              int width, int patch, int io_dtype, void* workspace, size_t workspace_bytes,
                              cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif /* TRT_RESTORE_KERNELS_H */
