// Paged decode attention's per-task kernel (see paged_attention.cpp), shared with the decode stack.
#pragma once
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

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

template <typename T>
void decode_task(const T* q, const T* k_cache, const T* v_cache, const int64_t* table,
                 int64_t ctx, int64_t kvh, int64_t G, int64_t D, int64_t NB, int64_t BS,
                 float scale, T* out, std::vector<float>& qf, std::vector<float>& scores,
                 std::vector<float>& acc) {
  // q rows of this kv head's group, as float: (G, D)
  for (int64_t g = 0; g < G; ++g)
    for (int64_t d = 0; d < D; ++d) qf[g * D + d] = to_f(q[g * D + d]) * scale;
  std::vector<float> mx(G, -3.0e38f);  // finite: -ffast-math assumes no infinities
  std::vector<float> kf(D);
  const int64_t n_blocks = (ctx + BS - 1) / BS;
  prefetch_block(k_cache + (kvh * NB + table[0]) * BS * D, BS * D);
  for (int64_t t = 0; t < ctx; ++t) {
    const int64_t block = table[t / BS];
    if (t % BS == 0) {
      // Blocks are scattered over the cache: ask for the next key block and this value block
      // now, so that their misses overlap with this block's work instead of stalling each row.
      if (t / BS + 1 < n_blocks)
        prefetch_block(k_cache + (kvh * NB + table[t / BS + 1]) * BS * D, BS * D);
      prefetch_block(v_cache + (kvh * NB + block) * BS * D, BS * D);
    }
    load_row(k_cache + ((kvh * NB + block) * BS + t % BS) * D, kf.data(), D);
    for (int64_t g = 0; g < G; ++g) {
      const float* qg = &qf[g * D];
      float s = 0.f;
      for (int64_t d = 0; d < D; ++d) s += qg[d] * kf[d];
      scores[g * ctx + t] = s;
      mx[g] = std::max(mx[g], s);
    }
  }
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
