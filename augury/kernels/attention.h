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

// Attention of R consecutive query rows of one sequence (a decoding token and the draft tokens
// verified after it) for one kv head: row j sees the first ctx + j cached tokens, and its G query
// heads start at q + j * q_stride. The rows share every key block transposed and every value row
// loaded; each row's own arithmetic (which scores kernel a block gets, the softmax over its own
// context, the order of the weighted sum) is what it would be alone, so a verified draft gets
// bit-identical results to decoding its tokens one at a time.
template <typename T>
void decode_task(const T* q, int64_t q_stride, int64_t R, const T* k_cache, const T* v_cache,
                 const int64_t* table, int64_t ctx, int64_t kvh, int64_t G, int64_t D, int64_t NB,
                 int64_t BS, float scale, T* out, int64_t out_stride, std::vector<T>& qh,
                 std::vector<float>& qf, std::vector<float>& scores, std::vector<float>& acc) {
  const int64_t Q = R * G, last = ctx + R - 1;  // query heads; the last row's context
  // Query heads gathered into one block, as they are (the bfloat16 path) and as float, scaled
  // (the scalar path).
  for (int64_t j = 0; j < R; ++j)
    for (int64_t g = 0; g < G; ++g)
      for (int64_t d = 0; d < D; ++d) {
        qh[(j * G + g) * D + d] = q[j * q_stride + g * D + d];
        qf[(j * G + g) * D + d] = to_f(q[j * q_stride + g * D + d]) * scale;
      }
  std::vector<float> kf(D);
  const int64_t n_blocks = (last + BS - 1) / BS;
  prefetch_block(k_cache + (kvh * NB + table[0]) * BS * D, BS * D);
  for (int64_t b = 0; b < n_blocks; ++b) {
    const int64_t base = (kvh * NB + table[b]) * BS, t0 = b * BS;
    // Blocks are scattered over the cache: ask for the next key block and this value block
    // now, so that their misses overlap with this block's work instead of stalling each row.
    if (b + 1 < n_blocks) prefetch_block(k_cache + (kvh * NB + table[b + 1]) * BS * D, BS * D);
    prefetch_block(v_cache + base * D, BS * D);
    // Rows [whole, R) see the whole block (later rows see more); the others part of it or none.
    const int64_t whole = std::clamp<int64_t>(t0 + BS - ctx, 0, R);
    int64_t partial = R;  // rows [0, partial) take the scalar path
#if AUGURY_ATTN_BF16
    if constexpr (std::is_same_v<T, c10::BFloat16>) {
      if (BS == 16 && D == 64 && whole < R) {
        block_scores_bf16(k_cache + base * D, qh.data() + whole * G * D, (R - whole) * G, scale,
                          scores.data() + whole * G * last + t0, last);
        partial = whole;
      }
    }
#endif
    for (int64_t j = 0; j < partial; ++j) {
      const int64_t t1 = std::min(ctx + j, t0 + BS);
      if (t1 > t0)
        scores_scalar<T>(k_cache, base, t0, t1, BS, qf.data() + j * G * D, G, D, kf.data(),
                         scores.data() + j * G * last, last);
    }
  }
  // Softmax weights in a loop of their own, so that the compiler vectorizes exp (libmvec):
  // one scalar exp per (head, token) was most of this kernel's time.
  std::vector<float> denom(Q, 0.f);
  for (int64_t i = 0; i < Q; ++i) {
    float* sg = &scores[i * last];
    const int64_t n = ctx + i / G;
    float m = -3.0e38f;  // finite: -ffast-math assumes no infinities
    for (int64_t t = 0; t < n; ++t) m = std::max(m, sg[t]);
    float sum = 0.f;
    for (int64_t t = 0; t < n; ++t) {
      const float p = std::exp(sg[t] - m);
      sg[t] = p;
      sum += p;
    }
    denom[i] = sum;
  }
  std::fill(acc.begin(), acc.begin() + Q * D, 0.f);
  for (int64_t t = 0; t < last; ++t) {
    const int64_t block = table[t / BS];
    load_row(v_cache + ((kvh * NB + block) * BS + t % BS) * D, kf.data(), D);
    // Rows whose context reaches t: those from max(0, t - ctx + 1) on.
    for (int64_t i = std::max<int64_t>(0, t - ctx + 1) * G; i < Q; ++i) {
      const float p = scores[i * last + t];
      float* a = &acc[i * D];
      for (int64_t d = 0; d < D; ++d) a[d] += p * kf[d];
    }
  }
  for (int64_t j = 0; j < R; ++j)
    for (int64_t g = 0; g < G; ++g) {
      const float inv = 1.f / denom[j * G + g];
      for (int64_t d = 0; d < D; ++d)
        out[j * out_stride + g * D + d] = static_cast<T>(acc[(j * G + g) * D + d] * inv);
    }
}

// Decode attention of B query rows: row b's H query heads start at q + b * q_stride, its output
// heads at out + b * H * D. Consecutive rows of one sequence (same block table, each context one
// longer: a token and its verified drafts) form a group; one task per (group, kv head), threads
// over the tasks.
template <typename T>
void decode_rows(const T* q, int64_t q_stride, const T* kc, const T* vc, const int64_t* tables,
                 int64_t MB, const int64_t* lens, int64_t B, int64_t H, int64_t KV, int64_t D,
                 int64_t NB, int64_t BS, float scale, T* out) {
  const int64_t G = H / KV;
  std::vector<int64_t> first;  // each group's first row
  int64_t max_rows = 1, max_ctx = 1;
  for (int64_t b = 0; b < B; ++b) {
    max_ctx = std::max(max_ctx, lens[b]);
    const bool joins = b > 0 && lens[b] == lens[b - 1] + 1 &&
                       std::equal(tables + b * MB, tables + b * MB + (lens[b] + BS - 1) / BS,
                                  tables + (b - 1) * MB);
    if (!joins) first.push_back(b);
    max_rows = std::max(max_rows, b + 1 - first.back());
  }
  first.push_back(B);
  // Too few tasks to keep every thread busy (one sequence verifying its drafts): split groups
  // into runs of fewer rows. Each run still shares its blocks, and each row's result is the same.
  const int64_t want = 2 * at::get_num_threads();
  if (static_cast<int64_t>(first.size() - 1) * KV < want && max_rows > 1) {
    const int64_t pieces = std::min(max_rows, (want + KV - 1) / KV);
    std::vector<int64_t> split;
    for (size_t i = 0; i + 1 < first.size(); ++i) {
      const int64_t rows = first[i + 1] - first[i], n = std::min(rows, pieces);
      for (int64_t p = 0; p < n; ++p) split.push_back(first[i] + p * rows / n);
    }
    split.push_back(B);
    first.swap(split);
    max_rows = 1;
    for (size_t i = 0; i + 1 < first.size(); ++i)
      max_rows = std::max(max_rows, first[i + 1] - first[i]);
  }
  const int64_t groups = static_cast<int64_t>(first.size()) - 1;
  at::parallel_for(0, groups * KV, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> qh(max_rows * G * D);
    std::vector<float> qf(max_rows * G * D), scores(max_rows * G * max_ctx),
        acc(max_rows * G * D);
    for (int64_t i = begin; i < end; ++i) {
      const int64_t b = first[i / KV], R = first[i / KV + 1] - b, kvh = i % KV;
      decode_task<T>(q + b * q_stride + kvh * G * D, q_stride, R, kc, vc, tables + b * MB,
                     lens[b], kvh, G, D, NB, BS, scale, out + (b * H + kvh * G) * D, H * D, qh,
                     qf, scores, acc);
    }
  });
}

}  // namespace augury
