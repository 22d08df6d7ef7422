// The CUDA header built for the CPU with g++ (simbias.cuda_build.build_cpu_shim): the very
// functions the GPU kernels run, called from Python through ctypes by the tests.
// Compile-time constants as in kernels.cu: SB_T, SB_M, SB_D, SB_N, SB_HALF.
#include "sgd_step.cuh"

extern "C" {

// Philox4x32-10 of ctr[4] under key[2] into out[4].
void sb_philox(const unsigned int* ctr, const unsigned int* key, unsigned int* out) {
    sb_u32 c[4] = {ctr[0], ctr[1], ctr[2], ctr[3]};
    sb_philox4x32_10(c, key[0], key[1]);
    for (int q = 0; q < 4; ++q) out[q] = c[q];
}

// Normals (steps, R, n) of replicas rids from step k0, as simbias.noise.normals.
void sb_normals(unsigned int key0, unsigned int key1, const long long* rids, int R, unsigned long long k0,
                int steps, int n, double* out) {
    for (int s = 0; s < steps; ++s)
        for (int b = 0; b < R; ++b)
            for (int j = 0; j < (n + 1) / 2; ++j) {
                double z0, z1;
                sb_normal_pair(key0, key1, (sb_u32)j, k0 + (sb_u64)s, (sb_u32)rids[b], &z0, &z1);
                double* o = out + ((long long)s * R + b) * n;
                o[2 * j] = z0;
                if (2 * j + 1 < n) o[2 * j + 1] = z1;
            }
}

// The thread-per-replica kernel's work, one replica after the other.
void sb_advance(SB_T* theta, const SB_T* X, const SB_T* y, const SB_T* w, SB_T nu, const SB_T* two_eta,
                const double* sigma, const long long* rids, int R, unsigned int key0, unsigned int key1,
                unsigned long long k0, int steps, double loss_bound, unsigned char* alive,
                long long* diverged_step) {
    for (int b = 0; b < R; ++b)
        sb_run_replica<SB_T, SB_M, SB_D, SB_N, SB_HALF>(b, theta, X, y, w, nu, two_eta, sigma, rids, key0, key1,
                                                        k0, steps, loss_bound, alive, diverged_step);
}
}
