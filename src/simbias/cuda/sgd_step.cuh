// Label-noise SGD: the noise stream and the per-step math, once, for the GPU and the CPU.
//
// __host__ __device__ functions: NVRTC/nvcc compile them into the CUDA kernels
// (kernels.cu), and g++ compiles them too (cpu_shim.cpp; the CUDA qualifiers are defined
// away outside __CUDACC__), so the tests run the very lines the GPU runs, on the CPU.
// The NumPy reference (simbias.noise, simbias.sgd.advance) and the numba kernel
// (simbias.kernels_cpu) are the only other copies; tests pin all of them bit for bit.
//
// Noise stream (docs/noise_stream.md): normal i of step k of replica r is
// Philox4x32-10(counter (i/2, k mod 2^32, k / 2^32, r), key (seed mod 2^32, seed / 2^32))
// turned into two normals by Box-Muller, with log/sin/cos built from + - * / sqrt,
// frexp and floor only (no maths library, so every build rounds alike).
// The step (paper eq. 3's discrete origin):
//   theta <- theta - 2 eta J^T (f - y + zeta),  f_i = sum_j w_j phi(z_ji),
//   z_ji = theta_j . x_i,  phi(z) = z^p + nu z,  p = 2 HALF + 1.
// No operation may be fused (g++ -ffp-contract=off, NVRTC -fmad=false) unless SB_FAST.
#pragma once

#ifndef __CUDACC__
#include <math.h>
#include <string.h>
#ifndef __host__
#define __host__
#endif
#ifndef __device__
#define __device__
#endif
#ifndef __forceinline__
#define __forceinline__ inline
#endif
#endif

#define SB_HD __host__ __device__ __forceinline__

typedef unsigned int sb_u32;
typedef unsigned long long sb_u64;

// Philox4x32-10 of counter c under key (k0, k1), in place (Random123's round and key schedule).
SB_HD void sb_philox4x32_10(sb_u32 c[4], sb_u32 k0, sb_u32 k1) {
    for (int rnd = 0; rnd < 10; ++rnd) {
        if (rnd) {
            k0 += 0x9E3779B9u;
            k1 += 0xBB67AE85u;
        }
        const sb_u64 p0 = (sb_u64)c[0] * 0xD2511F53ull;
        const sb_u64 p1 = (sb_u64)c[2] * 0xCD9E8D57ull;
        const sb_u32 n0 = (sb_u32)(p1 >> 32) ^ c[1] ^ k0;
        const sb_u32 n2 = (sb_u32)(p0 >> 32) ^ c[3] ^ k1;
        c[0] = n0;
        c[1] = (sb_u32)p1;
        c[2] = n2;
        c[3] = (sb_u32)p0;
    }
}

// The float64 in [0, 1) from the top 27 bits of hi and the top 26 of lo.
SB_HD double sb_uniform53(sb_u32 hi, sb_u32 lo) {
    return ((double)(hi >> 5) * 67108864.0 + (double)(lo >> 6)) * 0x1p-53;
}

// frexp for a normal v > 0: v = m 2^e with m in [1/2, 1), from the bits (exact; no address taken).
SB_HD double sb_frexp(double v, int* e) {
#ifdef __CUDACC__
    const long long bits = __double_as_longlong(v);
#else
    long long bits;
    memcpy(&bits, &v, sizeof bits);
#endif
    *e = (int)((bits >> 52) & 0x7ff) - 1022;
    const long long mb = (bits & ~(0x7ffLL << 52)) | (1022LL << 52);
#ifdef __CUDACC__
    return __longlong_as_double(mb);
#else
    double m;
    memcpy(&m, &mb, sizeof m);
    return m;
#endif
}

// log v for v in (0, 1]: v = m 2^e, m in [sqrt(1/2), sqrt(2)), log m = 2 atanh((m-1)/(m+1)).
SB_HD double sb_log_unit(double v) {
    const double c[11] = {0x1.0000000000000p+0, 0x1.5555555555555p-2, 0x1.999999999999ap-3,
                          0x1.2492492492492p-3, 0x1.c71c71c71c71cp-4, 0x1.745d1745d1746p-4,
                          0x1.3b13b13b13b14p-4, 0x1.1111111111111p-4, 0x1.e1e1e1e1e1e1ep-5,
                          0x1.af286bca1af28p-5, 0x1.8618618618618p-5};
    int ex;
    double m = sb_frexp(v, &ex);  // v >= 2^-53 is normal
    if (m < 0x1.6a09e667f3bcdp-1) {
        m = m * 2.0;
        ex -= 1;
    }
    const double e = (double)ex;
    const double s = (m - 1.0) / (m + 1.0);
    const double s2 = s * s;
    double acc = c[10];
#pragma unroll
    for (int i = 9; i >= 0; --i) acc = c[i] + s2 * acc;
    const double lm = 2.0 * s * acc;
    return e * 0x1.62e42fee00000p-1 + (e * 0x1.a39ef35793c76p-33 + lm);
}

// sin 2 pi t and cos 2 pi t for t in [0, 1): 4t = q + f exactly, x = f pi/2, quarter turns q mod 4.
SB_HD void sb_sincos_2pi(double t, double* sn, double* cs) {
    const double cs_[9] = {0x1.0000000000000p+0,  -0x1.5555555555555p-3, 0x1.1111111111111p-7,
                           -0x1.a01a01a01a01ap-13, 0x1.71de3a556c734p-19, -0x1.ae64567f544e4p-26,
                           0x1.6124613a86d09p-33,  -0x1.ae7f3e733b81fp-41, 0x1.952c77030ad4ap-49};
    const double cc_[10] = {0x1.0000000000000p+0,  -0x1.0000000000000p-1, 0x1.5555555555555p-5,
                            -0x1.6c16c16c16c17p-10, 0x1.a01a01a01a01ap-16, -0x1.27e4fb7789f5cp-22,
                            0x1.1eed8eff8d898p-29,  -0x1.93974a8c07c9dp-37, 0x1.ae7f3e733b81fp-45,
                            -0x1.6827863b97d97p-53};
    const double v = t * 4.0;
    const double q = floor(v + 0.5);
    const double x = (v - q) * 0x1.921fb54442d18p+0;
    const double x2 = x * x;
    double as = cs_[8];
#pragma unroll
    for (int i = 7; i >= 0; --i) as = cs_[i] + x2 * as;
    double ac = cc_[9];
#pragma unroll
    for (int i = 8; i >= 0; --i) ac = cc_[i] + x2 * ac;
    const double s = x * as;
    const double c = ac;
    const int qm = ((int)q) & 3;
    if (qm == 0) {
        *sn = s;
        *cs = c;
    } else if (qm == 1) {
        *sn = c;
        *cs = -s;
    } else if (qm == 2) {
        *sn = -s;
        *cs = -c;
    } else {
        *sn = -c;
        *cs = s;
    }
}

// Normals 2j and 2j+1 of step k of replica r under key (key0, key1).
SB_HD void sb_normal_pair(sb_u32 key0, sb_u32 key1, sb_u32 j, sb_u64 k, sb_u32 r, double* z0, double* z1) {
    sb_u32 c[4] = {j, (sb_u32)(k & 0xFFFFFFFFull), (sb_u32)(k >> 32), r};
    sb_philox4x32_10(c, key0, key1);
    const double u = sb_uniform53(c[0], c[1]);
    const double t = sb_uniform53(c[2], c[3]);
#if defined(SB_FAST) && defined(__CUDACC__)
    const double rho = sqrt(-2.0 * log(1.0 - u));
    double sn, cs;
    sincospi(2.0 * t, &sn, &cs);
#else
    const double rho = sqrt(-2.0 * sb_log_unit(1.0 - u));
    double sn, cs;
    sb_sincos_2pi(t, &sn, &cs);
#endif
    *z0 = rho * cs;
    *z1 = rho * sn;
}

// zeta_i = sigma z_i (float64 product rounded to T) of step k of replica r, for i < n.
template <typename T, int N>
SB_HD void sb_label_noise(T ze[N], double sigma, sb_u32 key0, sb_u32 key1, sb_u64 k, sb_u32 r) {
#pragma unroll
    for (int j = 0; j < (N + 1) / 2; ++j) {
        double z0, z1;
        sb_normal_pair(key0, key1, (sb_u32)j, k, r, &z0, &z1);
        ze[2 * j] = (T)(sigma * z0);
        if (2 * j + 1 < N) ze[2 * j + 1] = (T)(sigma * z1);
    }
}

// phi(z) = z z^(p-1) + nu z and phi'(z) = p z^(p-1) + nu, z^(p-1) = (z z)^HALF by products.
template <typename T, int HALF>
SB_HD void sb_phi_terms(T z, T pf, T nu, T* phi, T* dphi) {
    const T z2 = z * z;
    T zq = z2;
#pragma unroll
    for (int i = 0; i < HALF - 1; ++i) zq *= z2;
    *phi = z * zq + nu * z;
    *dphi = pf * zq + nu;
}

// `steps` steps of one replica from step k0, theta (M x D, row-major) in place.
// Sums in a fixed order: z over features, f over neurons, L (in double) and J^T lambda over
// samples. Returns the step (within the call) before which the loss L = sum (f - y)^2 was
// not <= loss_bound (the replica is then left as it was before that step), or -1.
template <typename T, int M, int D, int N, int HALF>
SB_HD int sb_replica_steps(T th[M * D], const T* X, const T* y, const T* w, T nu, T two_eta, double sigma,
                           sb_u32 key0, sb_u32 key1, sb_u32 r, sb_u64 k0, int steps, double loss_bound) {
    const T pf = (T)(2 * HALF + 1);
    T Dm[M * N];
    T f[N];
    T lam[N];
    for (int s = 0; s < steps; ++s) {
#pragma unroll
        for (int i = 0; i < N; ++i) f[i] = (T)0;
#pragma unroll
        for (int j = 0; j < M; ++j) {
            const T wj = w[j];
#pragma unroll
            for (int i = 0; i < N; ++i) {
                T acc = (T)0;
#pragma unroll
                for (int k = 0; k < D; ++k) acc += th[j * D + k] * X[i * D + k];
                T phi, dphi;
                sb_phi_terms<T, HALF>(acc, pf, nu, &phi, &dphi);
                f[i] += wj * phi;
                Dm[j * N + i] = wj * dphi;
            }
        }
        double loss = 0.0;
#pragma unroll
        for (int i = 0; i < N; ++i) {
            const T res = f[i] - y[i];
            loss += (double)(res * res);
            lam[i] = res;
        }
        if (!(loss <= loss_bound)) return s;
        if (sigma != 0.0) {
            T ze[N];
            sb_label_noise<T, N>(ze, sigma, key0, key1, k0 + (sb_u64)s, r);
#pragma unroll
            for (int i = 0; i < N; ++i) lam[i] = lam[i] + ze[i];
        }
#pragma unroll
        for (int j = 0; j < M; ++j) {
#pragma unroll
            for (int k = 0; k < D; ++k) {
                T acc = (T)0;
#pragma unroll
                for (int i = 0; i < N; ++i) acc += (Dm[j * N + i] * lam[i]) * X[i * D + k];
                th[j * D + k] -= two_eta * acc;
            }
        }
    }
    return -1;
}

// Replica b of a batch: load its theta, run the steps, store it back, flag a divergence.
// The thread-per-replica kernel calls this with b = its thread; the CPU build with b = 0 .. R-1.
template <typename T, int M, int D, int N, int HALF>
SB_HD void sb_run_replica(int b, T* theta, const T* X, const T* y, const T* w, T nu, const T* two_eta,
                          const double* sigma, const long long* rids, sb_u32 key0, sb_u32 key1, sb_u64 k0,
                          int steps, double loss_bound, unsigned char* alive, long long* diverged_step) {
    if (!alive[b]) return;
    T th[M * D];
    T* src = theta + (sb_u64)b * (M * D);
#pragma unroll
    for (int q = 0; q < M * D; ++q) th[q] = src[q];
    const int s = sb_replica_steps<T, M, D, N, HALF>(th, X, y, w, nu, two_eta[b], sigma[b], key0, key1,
                                                     (sb_u32)rids[b], k0, steps, loss_bound);
#pragma unroll
    for (int q = 0; q < M * D; ++q) src[q] = th[q];
    if (s >= 0) {
        alive[b] = 0;
        diverged_step[b] = (long long)k0 + s;
    }
}
