// Group-wise INT8 weights (GGUF's Q8_0: w = d * q per group of 32, q in -127..127, d float16)
// times rows of activations, on AVX-512 VNNI: the LM head (tied to the embedding) and the
// embedding lookup of a quantized model.
//
// The LM head of the bundled model is 49152 x 576: 57 MB in bfloat16, 30 MB here, read once per
// decode step. The activations are quantized per row and group as for the INT4 kernel (Q8Act in
// q4.h). vpdpbusd multiplies unsigned by signed bytes, so the weights are stored as q + 128
// (unsigned) and the sum that adds is taken back out per group:
// sum_k (q_k + 128) xq_k = sum_k q_k xq_k + 128 * sum_k xq_k, the last from Q8Act's qsum4.
//
// Layout per row: chunks of 4 groups (128 bytes) as in q4.h's activations: the 4 groups'
// columns 0-15 (64 bytes) then their columns 16-31 (64 bytes); a last chunk of n < 4 groups
// holds n * 16 bytes of each. So a row is exactly K bytes and each chunk's two halves line up
// with Q8Act's `lo` and `hi` byte for byte.
#pragma once
#include <ATen/Parallel.h>
#include <algorithm>
#include <cstdint>

#include "q4.h"

namespace augury {

constexpr int64_t Q8_TILE = 128;  // weight rows per tile: every row block of x reuses them

struct Q8Weight {
  const uint8_t* codes = nullptr;  // (N, K): q + 128, in the chunk layout above
  const uint16_t* d = nullptr;     // (N, K / 32) float16 bits
  int64_t N = 0, K = 0;
};

// Byte offsets in a row of group g's columns 0-15 (`lo`) and 16-31 (`hi`).
inline void q8_group_offsets(int64_t g, int64_t G, int64_t* lo, int64_t* hi) {
  const int64_t c = g / 4, in_chunk = std::min<int64_t>(4, G - 4 * c);
  *lo = c * 128 + (g % 4) * 16;
  *hi = *lo + in_chunk * 16;
}

#if AUGURY_Q4_VNNI
// One chunk (4 groups) of a weight row against MR rows of x, added to acc.
template <int MR>
__attribute__((always_inline)) inline void q8_chunk(const uint8_t* row, const uint16_t* dn,
                                                    int64_t c, int64_t groups, const Q8Act& a,
                                                    int64_t m0, __m512* acc) {
  const __m512i spread = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
  const uint8_t* p = row + c * 128;
  __m512i lo, hi;
  __m128i dh;
  if (groups == 4) {
    lo = _mm512_loadu_si512(p);
    hi = _mm512_loadu_si512(p + 64);
    dh = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(dn + 4 * c));
  } else {  // the row's last groups: masked loads never touch the bytes past the row
    const __mmask64 bm = (1ULL << (groups * 16)) - 1;
    lo = _mm512_maskz_loadu_epi8(bm, p);
    hi = _mm512_maskz_loadu_epi8(bm, p + groups * 16);
    dh = _mm_maskz_loadu_epi16(static_cast<__mmask8>((1u << groups) - 1), dn + 4 * c);
  }
  const __m512 d = _mm512_permutexvar_ps(spread, _mm512_castps128_ps512(_mm_cvtph_ps(dh)));
  for (int r = 0; r < MR; ++r) {
    const int64_t at = (m0 + r) * a.C + c;
    __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo,
                                      _mm512_loadu_si512(a.lo.data() + at * 64));
    dot = _mm512_dpbusd_epi32(dot, hi, _mm512_loadu_si512(a.hi.data() + at * 64));
    // scale * (sum (q + 128) xq) - scale * 128 * sum xq, per lane
    const __m512 t = _mm512_fmsub_ps(_mm512_cvtepi32_ps(dot),
                                     _mm512_loadu_ps(a.scale.data() + at * 16),
                                     _mm512_loadu_ps(a.qsum4.data() + at * 16));
    acc[r] = _mm512_fmadd_ps(d, t, acc[r]);
  }
}

// out[r * ldo + n] = sum_k x[m0 + r, k] * w[n, k] for r < MR, n in [n0, n1).
template <int MR, typename T>
inline void q8_rows(const Q8Weight& w, const Q8Act& a, int64_t m0, int64_t n0, int64_t n1, T* out,
                    int64_t ldo) {
  const int64_t G = w.K / Q4_GROUP, full = G / 4;
  for (int64_t n = n0; n < n1; ++n) {
    const uint8_t* row = w.codes + n * w.K;
    const uint16_t* dn = w.d + n * G;
    __m512 acc[MR];
    for (int r = 0; r < MR; ++r) acc[r] = _mm512_setzero_ps();
    for (int64_t c = 0; c < full; ++c) q8_chunk<MR>(row, dn, c, 4, a, m0, acc);
    if (full < a.C) q8_chunk<MR>(row, dn, full, G - 4 * full, a, m0, acc);
    for (int r = 0; r < MR; ++r) out[r * ldo + n] = static_cast<T>(_mm512_reduce_add_ps(acc[r]));
  }
}
#else
template <int MR, typename T>
inline void q8_rows(const Q8Weight& w, const Q8Act& a, int64_t m0, int64_t n0, int64_t n1, T* out,
                    int64_t ldo) {
  const int64_t G = w.K / Q4_GROUP, C = a.C;
  for (int64_t n = n0; n < n1; ++n) {
    for (int r = 0; r < MR; ++r) {
      const int64_t off = (m0 + r) * C;
      float acc = 0.f;
      for (int64_t g = 0; g < G; ++g) {
        int64_t lo, hi;
        q8_group_offsets(g, G, &lo, &hi);
        const uint8_t* wl = w.codes + n * w.K + lo;
        const uint8_t* wh = w.codes + n * w.K + hi;
        const int8_t* l = a.lo.data() + off * 64 + g * 16;
        const int8_t* h = a.hi.data() + off * 64 + g * 16;
        int32_t dot = 0;
        for (int i = 0; i < 16; ++i) dot += (wl[i] - 128) * l[i] + (wh[i] - 128) * h[i];
        acc += half_to_float(w.d[n * G + g]) * a.scale[off * 16 + g * 4] * static_cast<float>(dot);
      }
      out[r * ldo + n] = static_cast<T>(acc);
    }
  }
}
#endif

// out (M, ldo) <- x (M, K, quantized in `a`) @ w^T. Threads split the weight's rows; each
// thread walks them in tiles that stay in cache while every block of 8 rows of x passes.
template <typename T>
void q8_gemm(const Q8Weight& w, const Q8Act& a, T* out, int64_t ldo) {
  at::parallel_for(0, w.N, Q8_TILE, [&](int64_t n0, int64_t n1) {
    for (int64_t t0 = n0; t0 < n1; t0 += Q8_TILE) {
      const int64_t t1 = std::min(n1, t0 + Q8_TILE);
      for_row_blocks(a.M, [&](auto mr, int64_t m0) {
        q8_rows<decltype(mr)::value>(w, a, m0, t0, t1, out + m0 * ldo, ldo);
      });
    }
  });
}

// Rows `ids` of the weight, dequantized: out (T, K) = d * q (the embedding lookup).
template <typename T>
void q8_lookup(const Q8Weight& w, const int64_t* ids, int64_t count, T* out) {
  const int64_t G = w.K / Q4_GROUP;
  for (int64_t t = 0; t < count; ++t) {
    const uint8_t* row = w.codes + ids[t] * w.K;
    T* o = out + t * w.K;
    for (int64_t g = 0; g < G; ++g) {
      int64_t lo, hi;
      q8_group_offsets(g, G, &lo, &hi);
      const float d = half_to_float(w.d[ids[t] * G + g]);
      for (int i = 0; i < 16; ++i) {
        o[g * 32 + i] = static_cast<T>(d * static_cast<float>(row[lo + i] - 128));
        o[g * 32 + 16 + i] = static_cast<T>(d * static_cast<float>(row[hi + i] - 128));
      }
    }
  }
}

}  // namespace augury
