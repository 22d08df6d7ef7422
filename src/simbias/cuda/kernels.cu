// The label-noise SGD kernels (CuPy RawModule; simbias.gpu). Compile-time constants, set by
// simbias.cuda_build: SB_T (float or double), SB_M, SB_D, SB_N (sizes), SB_HALF (phi = z^(2 HALF + 1) + nu z),
// SB_THREADS (block size of the block-per-replica kernel, a multiple of 32 >= SB_M), and
// SB_KERNEL_THREAD or SB_KERNEL_BLOCK: which of the two kernels this module holds.
// Arguments of both: theta (R, M, D), X (N, D), y (N), w (M), nu, two_eta (R) = 2 eta per replica,
// sigma (R, double), rids (R, int64: each replica's noise stream), R, the seed's key, the first
// step k0, the step count, the loss bound, alive (R, uint8) and diverged_step (R, int64).
#include "sgd_step.cuh"

#ifdef SB_KERNEL_THREAD
// One thread per replica, theta in registers: the same operations as the CPU kernels, so
// with -fmad=false the same bits (sb_replica_steps).
extern "C" __global__ void sgd_thread_per_replica(SB_T* theta, const SB_T* __restrict__ X,
                                                  const SB_T* __restrict__ y, const SB_T* __restrict__ w,
                                                  SB_T nu, const SB_T* two_eta, const double* sigma,
                                                  const long long* rids, int R, unsigned int key0,
                                                  unsigned int key1, unsigned long long k0, int steps,
                                                  double loss_bound, unsigned char* alive,
                                                  long long* diverged_step) {
    const int b = blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= R) return;
    sb_run_replica<SB_T, SB_M, SB_D, SB_N, SB_HALF>(b, theta, X, y, w, nu, two_eta, sigma, rids, key0, key1,
                                                    k0, steps, loss_bound, alive, diverged_step);
}

#endif

#ifdef SB_KERNEL_BLOCK
#define SB_WARPS (SB_THREADS / 32)

// One block per replica, one thread per neuron j (theta_j and D_j in registers). f_i = sum_j
// w_j phi(z_ji) is a warp-shuffle tree plus a sum over warps in shared memory: another order
// than the CPU's, so it agrees within a tolerance, not bit for bit. Everything else (z, the
// loss in double, the noise, J^T lambda) is summed as in sb_replica_steps.
extern "C" __global__ void __launch_bounds__(SB_THREADS, 1)
    sgd_block_per_replica(SB_T* theta, const SB_T* __restrict__ X, const SB_T* __restrict__ y,
                          const SB_T* __restrict__ w, SB_T nu, const SB_T* two_eta, const double* sigma,
                          const long long* rids, int R, unsigned int key0, unsigned int key1,
                          unsigned long long k0, int steps, double loss_bound, unsigned char* alive,
                          long long* diverged_step) {
    const int b = blockIdx.x;
    if (b >= R || !alive[b]) return;  // the whole block leaves together
    const int j = threadIdx.x;
    const int lane = j & 31, warp = j >> 5;
    const bool mine = j < SB_M;
    __shared__ SB_T Xs[SB_N * SB_D];  // from shared memory, not hoisted into registers
    __shared__ SB_T part[SB_WARPS][SB_N];
    __shared__ SB_T res_sh[SB_N];
    __shared__ SB_T lam_sh[SB_N];
    __shared__ int stop;
    const SB_T pf = (SB_T)(2 * SB_HALF + 1);
    const SB_T wj = mine ? w[j] : (SB_T)0;
    const SB_T teta = two_eta[b];
    const double sig = sigma[b];
    const sb_u32 r = (sb_u32)rids[b];
    SB_T* src = theta + (sb_u64)b * (SB_M * SB_D) + (sb_u64)(mine ? j : 0) * SB_D;
    SB_T th[SB_D];
    SB_T Dj[SB_N];
    for (int q = j; q < SB_N * SB_D; q += SB_THREADS) Xs[q] = X[q];
#pragma unroll
    for (int k = 0; k < SB_D; ++k) th[k] = mine ? src[k] : (SB_T)0;
    __syncthreads();
    for (int s = 0; s < steps; ++s) {
#pragma unroll
        for (int i = 0; i < SB_N; ++i) {
            SB_T acc = (SB_T)0;
#pragma unroll
            for (int k = 0; k < SB_D; ++k) acc += th[k] * Xs[i * SB_D + k];
            SB_T phi, dphi;
            sb_phi_terms<SB_T, SB_HALF>(acc, pf, nu, &phi, &dphi);
            Dj[i] = wj * dphi;
            SB_T v = wj * phi;  // 0 for the padding threads
#pragma unroll
            for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
            if (lane == 0) part[warp][i] = v;
        }
        __syncthreads();
        for (int i = j; i < SB_N; i += SB_THREADS) {
            SB_T fi = part[0][i];
            for (int q = 1; q < SB_WARPS; ++q) fi += part[q][i];
            res_sh[i] = fi - y[i];
        }
        __syncthreads();
        if (j == 0) {
            double loss = 0.0;
            for (int i = 0; i < SB_N; ++i) loss += (double)(res_sh[i] * res_sh[i]);
            stop = !(loss <= loss_bound);
        }
        if (sig != 0.0) {
            for (int q = j; q < (SB_N + 1) / 2; q += SB_THREADS) {
                double z0, z1;
                sb_normal_pair(key0, key1, (sb_u32)q, k0 + (sb_u64)s, r, &z0, &z1);
                lam_sh[2 * q] = res_sh[2 * q] + (SB_T)(sig * z0);
                if (2 * q + 1 < SB_N) lam_sh[2 * q + 1] = res_sh[2 * q + 1] + (SB_T)(sig * z1);
            }
        } else {
            for (int i = j; i < SB_N; i += SB_THREADS) lam_sh[i] = res_sh[i];
        }
        __syncthreads();
        if (stop) {
            if (j == 0) {
                alive[b] = 0;
                diverged_step[b] = (long long)k0 + s;
            }
            break;
        }
#pragma unroll
        for (int k = 0; k < SB_D; ++k) {
            SB_T acc = (SB_T)0;
#pragma unroll
            for (int i = 0; i < SB_N; ++i) acc += (Dj[i] * lam_sh[i]) * Xs[i * SB_D + k];
            th[k] -= teta * acc;
        }
    }
    if (mine) {
#pragma unroll
        for (int k = 0; k < SB_D; ++k) src[k] = th[k];
    }
}
#endif
