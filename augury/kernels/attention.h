// Paged decode attention's per-task kernel (see paged_attention.cpp), shared with the decode stack.
#pragma once
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#if defined(__AVX512F__) && defined(__AVX512BF16__)
#include <immintrin.h>
#define AUGURY_ATTN_BF16 1
#else
#define AUGURY_ATTN_BF16 0
#endif

namespace augury {


inline float to_f(float x) { return x; }
inline float to_f(c10::BFloat16 x) { return static_cast<float>(x); }

// Row of D values -> float, written so the compiler vectorizes it: bfloat16 is the top half of a
// float32, so widening is a 16-bit shift of the raw bits.
inline void load_row(const float* src, float* dst, int64_t D) {
  for (int64_t d = 0; d < D; ++d) dst[d] = src[d];
}
inline void load_row(const c10::BFloat16* src, float* dst, int64_t D) {
  const uint16_t* raw = reinterpret_cast<const uint16_t*>(src);
  uint32_t* out = reinterpret_cast<uint32_t*>(dst);
  for (int64_t d = 0; d < D; ++d) out[d] = static_cast<uint32_t>(raw[d]) << 16;
}

// Hint the caches to fetch `n` elements starting at `p` (one request per 64-byte line).
template <typename T>
inline void prefetch_block(const T* p, int64_t n) {
  const char* c = reinterpret_cast<const char*>(p);
  for (int64_t off = 0; off < n * static_cast<int64_t>(sizeof(T)); off += 64)
    __builtin_prefetch(c + off, 0, 3);
}

#if AUGURY_ATTN_BF16
// In place: r[i] (16 int32 lanes) becomes column i of the 16 x 16 matrix whose rows r held.
inline void transpose16x16_epi32(__m512i* r) {
  __m512i t[16];
  for (int i = 0; i < 16; i += 4) {
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    t[i + 2] = _mm512_unpacklo_epi32(r[i + 2], r[i + 3]);
    t[i + 3] = _mm512_unpackhi_epi32(r[i + 2], r[i + 3]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
    r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
    r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
    r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  // r[4b + c] now holds, per 128-bit lane L, entry (4L + c) of rows 4b .. 4b + 3.
  for (int h = 0; h < 16; h += 8)
    for (int c = 0; c < 4; ++c) {
      t[h + c] = _mm512_shuffle_i32x4(r[h + c], r[h + 4 + c], 0x88);
      t[h + 4 + c] = _mm512_shuffle_i32x4(r[h + c], r[h + 4 + c], 0xdd);
    }
  for (int c = 0; c < 8; ++c) {
    r[c] = _mm512_shuffle_i32x4(t[c], t[8 + c], 0x88);
    r[8 + c] = _mm512_shuffle_i32x4(t[c], t[8 + c], 0xdd);
  }
}

// Scores of one full cache block of 16 keys (16, 64) bfloat16 for G query heads q (G, 64)
// bfloat16: out[g * stride + i] = scale * q_g . k_i. The block is transposed to pairs of
// dimensions (32 x 16 tokens), so each head's 16 scores come from 32 vdpbf16ps into one
// register: no per-token horizontal sums (three of them per key were most of the old loop).
inline void block_scores_bf16(const c10::BFloat16* kblk, const c10::BFloat16* q, int64_t G,
                              float scale, float* out, int64_t stride) {
  alignas(64) uint32_t cols[32][16];  // (dimension pair j, token i)
  const uint32_t* rows = reinterpret_cast<const uint32_t*>(kblk);  // (16 tokens, 32 pairs)
  for (int half = 0; half < 2; ++half) {
    __m512i r[16];
    for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_si512(rows + i * 32 + half * 16);
    transpose16x16_epi32(r);
    for (int j = 0; j < 16; ++j) _mm512_store_si512(cols[half * 16 + j], r[j]);
  }
  const uint32_t* qp = reinterpret_cast<const uint32_t*>(q);
  const __m512 sc = _mm512_set1_ps(scale);
  for (int64_t g = 0; g < G; ++g) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    for (int j = 0; j < 32; j += 2) {
      a0 = _mm512_dpbf16_ps(a0, (__m512bh)_mm512_load_si512(cols[j]),
                            (__m512bh)_mm512_set1_epi32(static_cast<int>(qp[g * 32 + j])));
      a1 = _mm512_dpbf16_ps(a1, (__m512bh)_mm512_load_si512(cols[j + 1]),
                            (__m512bh)_mm512_set1_epi32(static_cast<int>(qp[g * 32 + j + 1])));
    }
    _mm512_storeu_ps(out + g * stride, _mm512_mul_ps(_mm512_add_ps(a0, a1), sc));
  }
}
#endif

// Scores of the keys [t0, t1) (within one block) for the G heads of qf (scaled floats), one
// dot product per key and head.
template <typename T>
inline void scores_scalar(const T* k_cache, int64_t base, int64_t t0, int64_t t1, int64_t BS,
                             const float* qf, int64_t G, int64_t D, float* kf, float* scores,
                             int64_t ctx) {
  for (int64_t t = t0; t < t1; ++t) {
    load_row(k_cache + (base + t % BS) * D, kf, D);
    for (int64_t g = 0; g < G; ++g) {
      const float* qg = &qf[g * D];
      float s = 0.f;
      for (int64_t d = 0; d < D; ++d) s += qg[d] * kf[d];
      scores[g * ctx + t] = s;
    }
  }
}

template <typename T>
void decode_task(const T* q, const T* k_cache, const T* v_cache, const int64_t* table,
                 int64_t ctx, int64_t kvh, int64_t G, int64_t D, int64_t NB, int64_t BS,
                 float scale, T* out, std::vector<float>& qf, std::vector<float>& scores,
                 std::vector<float>& acc) {
  // q rows of this kv head's group, as float: (G, D)
  for (int64_t g = 0; g < G; ++g)
    for (int64_t d = 0; d < D; ++d) qf[g * D + d] = to_f(q[g * D + d]) * scale;
  std::vector<float> kf(D);
  const int64_t n_blocks = (ctx + BS - 1) / BS;
  prefetch_block(k_cache + (kvh * NB + table[0]) * BS * D, BS * D);
  for (int64_t b = 0; b < n_blocks; ++b) {
    const int64_t base = (kvh * NB + table[b]) * BS, t0 = b * BS, t1 = std::min(ctx, t0 + BS);
    // Blocks are scattered over the cache: ask for the next key block and this value block
    // now, so that their misses overlap with this block's work instead of stalling each row.
    if (b + 1 < n_blocks) prefetch_block(k_cache + (kvh * NB + table[b + 1]) * BS * D, BS * D);
    prefetch_block(v_cache + base * D, BS * D);
#if AUGURY_ATTN_BF16
    if constexpr (std::is_same_v<T, c10::BFloat16>) {
      if (BS == 16 && D == 64 && t1 - t0 == 16) {
        block_scores_bf16(k_cache + base * D, q, G, scale, scores.data() + t0, ctx);
        continue;
      }
    }
#endif
    scores_scalar<T>(k_cache, base, t0, t1, BS, qf.data(), G, D, kf.data(), scores.data(), ctx);
  }
  std::vector<float> mx(G, -3.0e38f);  // finite: -ffast-math assumes no infinities
  for (int64_t g = 0; g < G; ++g)
    for (int64_t t = 0; t < ctx; ++t) mx[g] = std::max(mx[g], scores[g * ctx + t]);
  // Softmax weights in a loop of its own, so that the compiler vectorizes exp (libmvec):
  // one scalar exp per (head, token) was most of this kernel's time.
  std::vector<float> denom(G, 0.f);
  for (int64_t g = 0; g < G; ++g) {
    float* sg = &scores[g * ctx];
    const float m = mx[g];
    float sum = 0.f;
    for (int64_t t = 0; t < ctx; ++t) {
      const float p = std::exp(sg[t] - m);
      sg[t] = p;
      sum += p;
    }
    denom[g] = sum;
  }
  std::fill(acc.begin(), acc.begin() + G * D, 0.f);
  for (int64_t t = 0; t < ctx; ++t) {
    const int64_t block = table[t / BS];
    load_row(v_cache + ((kvh * NB + block) * BS + t % BS) * D, kf.data(), D);
    for (int64_t g = 0; g < G; ++g) {
      const float p = scores[g * ctx + t];
      float* a = &acc[g * D];
      for (int64_t d = 0; d < D; ++d) a[d] += p * kf[d];
    }
  }
  for (int64_t g = 0; g < G; ++g) {
    const float inv = 1.f / denom[g];
    for (int64_t d = 0; d < D; ++d) out[g * D + d] = static_cast<T>(acc[g * D + d] * inv);
  }
}

// Decode attention of B query rows, one task per (row, kv head), threads over the tasks: row b's
// H query heads start at q + b * q_stride, its output heads at out + b * H * D.
template <typename T>
void decode_rows(const T* q, int64_t q_stride, const T* kc, const T* vc, const int64_t* tables,
                 int64_t MB, const int64_t* lens, int64_t B, int64_t H, int64_t KV, int64_t D,
                 int64_t NB, int64_t BS, float scale, T* out) {
  const int64_t G = H / KV;
  int64_t max_ctx = 1;
  for (int64_t b = 0; b < B; ++b) max_ctx = std::max(max_ctx, lens[b]);
  at::parallel_for(0, B * KV, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> qf(G * D), scores(G * max_ctx), acc(G * D);
    for (int64_t i = begin; i < end; ++i) {
      const int64_t b = i / KV, kvh = i % KV;
      decode_task<T>(q + b * q_stride + kvh * G * D, kc, vc, tables + b * MB, lens[b], kvh, G, D,
                     NB, BS, scale, out + (b * H + kvh * G) * D, qf, scores, acc);
    }
  });
}

}  // namespace augury
