/*
 * attn.cu — attention of one query over compressed KV pages on the device
 * (issue 9 item 3; DESIGN.md "The KV cache": attend()).  K and V rows are
 * q8_0 / q4_0 blocks, [n_ctx][n_kv_heads][head_size] (a cache's sealed
 * pages back to back); the arithmetic follows libkvq/cache.c, which follows
 * llama2.c:
 *   score[t] = Σ_i q[i]·k_t[i] / sqrtf(head_size)
 *   p = softmax(score) (maximum subtracted, expf, divided by the sum)
 *   out[i] = Σ_t p_t·v_t[i]
 * One thread block per query head (GQA: KV head h / group).
 *   scores: a warp per token, lane l holding channel 32b + l of block b,
 *     so each lane dequantizes one code per block in registers and the
 *     scale is a broadcast; the 32 partial sums meet by shuffles;
 *   softmax: block-wide max and sum over the scores (kept in global
 *     scratch att[n_heads][n_ctx]: any context length fits);
 *   values: threads split as parts × head_size (token t to part t % parts),
 *     each dequantizing v_t[i] in registers, partial sums added in part
 *     order at the end.
 * Summation orders differ from the CPU's (it sums in channel and token
 * order), so results agree within f32 rounding, not bit for bit.
 */
#include "kernels/cuda/cu_internal.cuh"

#define ATT_THREADS 256                      /* threads per query head       */
#define ATT_WARPS   (ATT_THREADS / KVQ_CU_WARP)

/* Block-wide max (is_max) or sum of one value per thread; every thread
 * gets the result.  red holds ATT_WARPS floats. */
__device__ static float block_reduce(float v, bool is_max, float *red)
{
    int lane = threadIdx.x % KVQ_CU_WARP, warp = threadIdx.x / KVQ_CU_WARP;
    for (int off = KVQ_CU_WARP / 2; off > 0; off /= 2) {
        float o = __shfl_xor_sync(KVQ_CU_FULL, v, off);
        v = is_max ? fmaxf(v, o) : v + o;
    }
    if (lane == 0) red[warp] = v;
    __syncthreads();
    v = red[0];
    for (int w = 1; w < ATT_WARPS; w++) v = is_max ? fmaxf(v, red[w]) : v + red[w];
    __syncthreads(); /* red is reused by the next call */
    return v;
}

template <typename BK, typename BV>
__global__ static void __launch_bounds__(ATT_THREADS)
    attend(const BK *k, const BV *v, const float *q, int n_ctx, int n_kv, int hs, int group, float *att, float *out)
{
    __shared__ float red[ATT_WARPS];
    __shared__ float part_sum[ATT_THREADS];
    const int h = blockIdx.x, kvh = h / group, lane = threadIdx.x % KVQ_CU_WARP, warp = threadIdx.x / KVQ_CU_WARP;
    const int bph = hs / KVQ_QK;                      /* blocks per (token, head) row */
    const size_t row_stride = (size_t)n_kv * (size_t)bph; /* blocks per token            */
    const float *qh = q + (size_t)h * (size_t)hs;
    float *a = att + (size_t)h * (size_t)n_ctx;
    const float denom = sqrtf((float)hs);

    for (int t = warp; t < n_ctx; t += ATT_WARPS) {
        const BK *row = k + (size_t)t * row_stride + (size_t)kvh * (size_t)bph;
        float s = 0.0f;
        for (int b = 0; b < bph; b++) s = fmaf(qh[b * KVQ_QK + lane], kvq_cu_value(&row[b], lane), s);
        for (int off = KVQ_CU_WARP / 2; off > 0; off /= 2) s += __shfl_xor_sync(KVQ_CU_FULL, s, off);
        if (lane == 0) a[t] = s / denom;
    }
    __syncthreads();

    float m = -INFINITY;
    for (int t = threadIdx.x; t < n_ctx; t += ATT_THREADS) m = fmaxf(m, a[t]);
    m = block_reduce(m, true, red);
    float sum = 0.0f;
    for (int t = threadIdx.x; t < n_ctx; t += ATT_THREADS) {
        float e = expf(a[t] - m);
        a[t] = e;
        sum += e;
    }
    sum = block_reduce(sum, false, red); /* its __syncthreads publish a[] */

    const int parts = hs < ATT_THREADS ? ATT_THREADS / hs : 1, part = threadIdx.x / hs;
    float *o = out + (size_t)h * (size_t)hs;
    if (part < parts)
        for (int c = threadIdx.x % hs; c < hs; c += ATT_THREADS) {
            float acc = 0.0f;
            for (int t = part; t < n_ctx; t += parts) {
                const BV *row = v + (size_t)t * row_stride + (size_t)kvh * (size_t)bph;
                acc = fmaf(a[t] / sum, kvq_cu_value(&row[c / KVQ_QK], c % KVQ_QK), acc);
            }
            if (parts == 1) o[c] = acc;
            else part_sum[part * hs + c] = acc;
        }
    if (parts == 1) return;
    __syncthreads();
    if (threadIdx.x < hs) {
        float acc = part_sum[threadIdx.x];
        for (int p = 1; p < parts; p++) acc += part_sum[p * hs + threadIdx.x];
        o[threadIdx.x] = acc;
    }
}

template <typename BK>
static void launch_v(const kvq_cuda_kv *kv, const BK *k, const void *v, const float *q, int n_heads, float *att,
                     float *out, cudaStream_t s)
{
    int group = n_heads / kv->n_kv_heads;
    if (kv->v_type == KVQ_KT_Q8_0)
        attend<<<n_heads, ATT_THREADS, 0, s>>>(k, (const kvq_block_q8_0 *)v, q, kv->n_ctx, kv->n_kv_heads,
                                               kv->head_size, group, att, out);
    else
        attend<<<n_heads, ATT_THREADS, 0, s>>>(k, (const kvq_block_q4_0 *)v, q, kv->n_ctx, kv->n_kv_heads,
                                               kv->head_size, group, att, out);
}

cudaError_t kvq_cu_launch_attend(const kvq_cuda_kv *kv, const void *k, const void *v, const float *q, int n_heads,
                                 float *att, float *out, cudaStream_t s)
{
    if (kv->k_type == KVQ_KT_Q8_0) launch_v(kv, (const kvq_block_q8_0 *)k, v, q, n_heads, att, out, s);
    else launch_v(kv, (const kvq_block_q4_0 *)k, v, q, n_heads, att, out, s);
    return cudaGetLastError();
}
