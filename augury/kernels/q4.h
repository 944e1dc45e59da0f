// Group-wise INT4 weights times a few rows of activations, on AVX-512 VNNI integer dot products.
//
// The weight (N, K) is Q4_1's form: per row and group of 32 columns, w = d * q + m with q in
// 0..15 and d, m float16. Per row, each group is 16 bytes: the low nibbles hold the group's
// columns 0-15 and the high nibbles columns 16-31, so one 64-byte load gives four groups and
// two masks split them into the byte lanes of two dot products without any shuffling.
//
// The activations are quantized per row and group of 32 to int8 with a float scale (what
// llama.cpp does for its Q4 x Q8 dot products): sum_k w_k x_k over a group is then
// d * dx * sum_k q_k xq_k + m * sum_k x_k, the first sum in exact integer arithmetic
// (vpdpbusd: unsigned 4-bit codes times signed 8-bit activations, four products per int32 lane).
// The error this adds is that of rounding x to 8 bits per group (tested against float math).
//
// A decode step reads every weight once per step for up to 8 rows of x, so this is bound by
// memory bandwidth: 0.625 bytes per weight instead of bfloat16's 2.
#pragma once
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Exception.h>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && \
    defined(__AVX512VNNI__) && defined(__F16C__)
#include <immintrin.h>
#define AUGURY_Q4_VNNI 1
#else
#define AUGURY_Q4_VNNI 0
#endif

namespace augury {

constexpr int64_t Q4_GROUP = 32;
constexpr int64_t Q4_ROWS = 8;  // rows of x per pass over the weights (accumulators in registers)

// A view of an INT4 weight (N, K), K a multiple of 32.
struct Q4Weight {
  const uint8_t* nib = nullptr;  // (N, K / 2): 16 bytes per group, see above
  const uint16_t* d = nullptr;   // (N, K / 32) float16 bits
  const uint16_t* m = nullptr;   // (N, K / 32) float16 bits
  int64_t N = 0, K = 0;
};

inline float half_to_float(uint16_t h) {
#if AUGURY_Q4_VNNI
  return _cvtsh_ss(h);
#else
  const uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ffu;
  float f;
  if (exp == 0) {
    f = std::ldexp(static_cast<float>(man), -24);
  } else if (exp == 31) {
    f = man ? NAN : INFINITY;
  } else {
    f = std::ldexp(static_cast<float>(man | 0x400u), static_cast<int>(exp) - 25);
  }
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  bits |= sign;
  std::memcpy(&f, &bits, 4);
  return f;
#endif
}

// Rows of x quantized for the weights' layout: per row, chunks of 4 groups (the last padded
// with zeros); per chunk 64 int8 codes of the groups' columns 0-15 (`lo`) and 64 of columns
// 16-31 (`hi`), and per int32 lane of the dot products (4 per group) the group's scale, a
// quarter of its sum (the 4 lanes of a group add up to the whole m * sum x term) and, for
// weights stored as unsigned code + 128 (q8.h), a quarter of 128 * scale * the sum of its codes.
struct Q8Act {
  int64_t M = 0, G = 0, C = 0;
  std::vector<int8_t> lo, hi;             // (M, C * 64)
  std::vector<float> scale, sum4, qsum4;  // (M, C * 16)

  template <typename T>
  void quantize(const T* x, int64_t ldx, int64_t rows, int64_t K) {
    M = rows;
    G = K / Q4_GROUP;
    C = (G + 3) / 4;
    lo.assign(M * C * 64, 0);
    hi.assign(M * C * 64, 0);
    scale.assign(M * C * 16, 0.f);
    sum4.assign(M * C * 16, 0.f);
    qsum4.assign(M * C * 16, 0.f);
    float v[Q4_GROUP];
    for (int64_t r = 0; r < M; ++r) {
      for (int64_t g = 0; g < G; ++g) {
        const T* xg = x + r * ldx + g * Q4_GROUP;
        float amax = 0.f, sum = 0.f;
        for (int64_t i = 0; i < Q4_GROUP; ++i) {
          v[i] = static_cast<float>(xg[i]);
          amax = std::max(amax, std::fabs(v[i]));
          sum += v[i];
        }
        const float inv = amax > 0.f ? 127.f / amax : 0.f;
        int8_t* l = &lo[r * C * 64 + g * 16];
        int8_t* h = &hi[r * C * 64 + g * 16];
        int32_t qsum = 0;
        for (int64_t i = 0; i < 16; ++i) {
          l[i] = static_cast<int8_t>(std::nearbyint(v[i] * inv));
          h[i] = static_cast<int8_t>(std::nearbyint(v[16 + i] * inv));
          qsum += l[i] + h[i];
        }
        for (int64_t lane = 0; lane < 4; ++lane) {
          scale[r * C * 16 + g * 4 + lane] = amax / 127.f;
          sum4[r * C * 16 + g * 4 + lane] = 0.25f * sum;
          qsum4[r * C * 16 + g * 4 + lane] = 32.f * (amax / 127.f) * static_cast<float>(qsum);
        }
      }
    }
  }
};

// x (M, K) float32 or bfloat16 on the CPU, checked and rounded into `act` for `op`; returns
// the contiguous x.
inline at::Tensor quantize_input(Q8Act& act, at::Tensor x, int64_t K, const char* op) {
  TORCH_CHECK(x.device().is_cpu() && x.dim() == 2 && x.size(1) == K, "x must be a (M, ", K,
              ") CPU tensor");
  x = x.contiguous();
  if (x.scalar_type() == at::kBFloat16) {
    act.quantize(x.data_ptr<c10::BFloat16>(), K, x.size(0), K);
  } else {
    TORCH_CHECK(x.scalar_type() == at::kFloat, op, " supports float32 and bfloat16 inputs");
    act.quantize(x.data_ptr<float>(), K, x.size(0), K);
  }
  return x;
}

#if AUGURY_Q4_VNNI
// One chunk (4 groups) of weight row `nb` against MR rows of x, added to acc.
template <int MR>
__attribute__((always_inline)) inline void q4_chunk(const uint8_t* nb, const uint16_t* dn,
                                                    const uint16_t* mn, int64_t c, int64_t groups,
                                                    const Q8Act& a, int64_t m0, __m512* acc) {
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  const __m512i spread = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
  __m512i bytes;
  __m128i dh, mh;
  if (groups == 4) {
    bytes = _mm512_loadu_si512(nb + c * 64);
    dh = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(dn + 4 * c));
    mh = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(mn + 4 * c));
  } else {  // the row's last groups: masked loads never touch the bytes past the row
    const __mmask64 bm = (1ULL << (groups * 16)) - 1;
    const __mmask8 hm = static_cast<__mmask8>((1u << groups) - 1);
    bytes = _mm512_maskz_loadu_epi8(bm, nb + c * 64);
    dh = _mm_maskz_loadu_epi16(hm, dn + 4 * c);
    mh = _mm_maskz_loadu_epi16(hm, mn + 4 * c);
  }
  const __m512i lo = _mm512_and_si512(bytes, low4);
  const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(bytes, 4), low4);
  const __m512 d = _mm512_permutexvar_ps(spread, _mm512_castps128_ps512(_mm_cvtph_ps(dh)));
  const __m512 m = _mm512_permutexvar_ps(spread, _mm512_castps128_ps512(_mm_cvtph_ps(mh)));
  for (int r = 0; r < MR; ++r) {
    const int64_t at = (m0 + r) * a.C + c;
    __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo,
                                    _mm512_loadu_si512(a.lo.data() + at * 64));
    p = _mm512_dpbusd_epi32(p, hi, _mm512_loadu_si512(a.hi.data() + at * 64));
    const __m512 s = _mm512_mul_ps(d, _mm512_loadu_ps(a.scale.data() + at * 16));
    acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), s, acc[r]);
    acc[r] = _mm512_fmadd_ps(m, _mm512_loadu_ps(a.sum4.data() + at * 16), acc[r]);
  }
}

// out[r * ldo + n] = sum_k x[m0 + r, k] * w[n, k] for r < MR, n in [n0, n1).
template <int MR, typename T>
inline void q4_rows(const Q4Weight& w, const Q8Act& a, int64_t m0, int64_t n0, int64_t n1, T* out,
                    int64_t ldo) {
  const int64_t G = w.K / Q4_GROUP, C = a.C, row_bytes = w.K / 2;
  for (int64_t n = n0; n < n1; ++n) {
    // Even and odd chunks on separate accumulators: two independent dependency chains
    // (one row alone is otherwise bound by the latency of its multiply-adds).
    __m512 even[MR], odd[MR];
    for (int r = 0; r < MR; ++r) even[r] = odd[r] = _mm512_setzero_ps();
    const uint8_t* nb = w.nib + n * row_bytes;
    const uint16_t* dn = w.d + n * G;
    const uint16_t* mn = w.m + n * G;
    int64_t c = 0;
    for (; c + 1 < C; c += 2) {
      q4_chunk<MR>(nb, dn, mn, c, 4, a, m0, even);
      q4_chunk<MR>(nb, dn, mn, c + 1, std::min<int64_t>(4, G - 4 * (c + 1)), a, m0, odd);
    }
    if (c < C) q4_chunk<MR>(nb, dn, mn, c, std::min<int64_t>(4, G - 4 * c), a, m0, even);
    for (int r = 0; r < MR; ++r)
      out[r * ldo + n] = static_cast<T>(_mm512_reduce_add_ps(_mm512_add_ps(even[r], odd[r])));
  }
}
#else
// Portable fallback (no AVX-512 VNNI): the same arithmetic, one product at a time.
template <int MR, typename T>
inline void q4_rows(const Q4Weight& w, const Q8Act& a, int64_t m0, int64_t n0, int64_t n1, T* out,
                    int64_t ldo) {
  const int64_t G = w.K / Q4_GROUP, C = a.C, row_bytes = w.K / 2;
  for (int64_t n = n0; n < n1; ++n) {
    for (int r = 0; r < MR; ++r) {
      const int64_t off = (m0 + r) * C;
      float acc = 0.f;
      for (int64_t g = 0; g < G; ++g) {
        const uint8_t* nb = w.nib + n * row_bytes + g * 16;
        const int8_t* l = a.lo.data() + off * 64 + g * 16;
        const int8_t* h = a.hi.data() + off * 64 + g * 16;
        int32_t dot = 0;
        for (int i = 0; i < 16; ++i) dot += (nb[i] & 0x0F) * l[i] + (nb[i] >> 4) * h[i];
        const float dx = a.scale[off * 16 + g * 4], sx = 4.f * a.sum4[off * 16 + g * 4];
        acc += half_to_float(w.d[n * G + g]) * dx * static_cast<float>(dot) +
               half_to_float(w.m[n * G + g]) * sx;
      }
      out[r * ldo + n] = static_cast<T>(acc);
    }
  }
}
#endif

// Calls f(std::integral_constant<int, MR>{}, m0) for each block of up to Q4_ROWS rows of M,
// MR the block's row count as a compile-time constant (the kernels keep one accumulator per
// row in registers).
template <typename F>
inline void for_row_blocks(int64_t M, F&& f) {
  using std::integral_constant;
  for (int64_t m0 = 0; m0 < M; m0 += Q4_ROWS) {
    switch (std::min<int64_t>(Q4_ROWS, M - m0)) {
      case 1: f(integral_constant<int, 1>{}, m0); break;
      case 2: f(integral_constant<int, 2>{}, m0); break;
      case 3: f(integral_constant<int, 3>{}, m0); break;
      case 4: f(integral_constant<int, 4>{}, m0); break;
      case 5: f(integral_constant<int, 5>{}, m0); break;
      case 6: f(integral_constant<int, 6>{}, m0); break;
      case 7: f(integral_constant<int, 7>{}, m0); break;
      default: f(integral_constant<int, 8>{}, m0); break;
    }
  }
}

// out (M, ldo) <- x (M, K, quantized in `a`) @ w^T, threads splitting the weight's rows.
template <typename T>
void q4_gemm(const Q4Weight& w, const Q8Act& a, T* out, int64_t ldo) {
  at::parallel_for(0, w.N, 16, [&](int64_t n0, int64_t n1) {
    for_row_blocks(a.M, [&](auto mr, int64_t m0) {
      q4_rows<decltype(mr)::value>(w, a, m0, n0, n1, out + m0 * ldo, ldo);
    });
  });
}

}  // namespace augury
