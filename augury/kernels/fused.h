// The fused elementwise kernels' implementations (see fused.cpp), shared with the decode stack.
#pragma once
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace augury {

// x rounded to T and back to float: what storing an op's result in dtype T does.
template <typename T>
inline float rnd(float x) {
  return static_cast<float>(static_cast<T>(x));
}

// residual[i] <- T(residual[i] + x[i]) when x is given; out[i] <- T(w * T(r * rsqrt(mean(r^2) + eps)))
template <typename T>
void add_rms_norm_impl(const T* x, T* res, const T* w, T* out, int64_t N, int64_t H, float eps) {
  at::parallel_for(0, N, 8, [&](int64_t begin, int64_t end) {
    std::vector<float> row(H);
    for (int64_t i = begin; i < end; ++i) {
      T* r = res + i * H;
      float ss = 0.f;
      if (x != nullptr) {
        const T* xi = x + i * H;
        for (int64_t d = 0; d < H; ++d) {
          const float v = rnd<T>(static_cast<float>(r[d]) + static_cast<float>(xi[d]));
          r[d] = static_cast<T>(v);
          row[d] = v;
          ss += v * v;
        }
      } else {
        for (int64_t d = 0; d < H; ++d) {
          const float v = static_cast<float>(r[d]);
          row[d] = v;
          ss += v * v;
        }
      }
      const float inv = 1.f / std::sqrt(ss / static_cast<float>(H) + eps);
      T* o = out + i * H;
      for (int64_t d = 0; d < H; ++d)
        o[d] = static_cast<T>(static_cast<float>(w[d]) * rnd<T>(row[d] * inv));
    }
  });
}

// Rotate the first `rotated` heads of each row of qkv in place (rotate-half layout; the sign of
// the first half lives in the sin table), then copy the key and value heads to their cache slot.
template <typename T>
void rotary_cache_impl(T* qkv, const T* cos, const T* sin, T* kc, T* vc, const int64_t* slots,
                       int64_t Tn, int64_t H, int64_t KV, int64_t D, int64_t slots_per_head) {
  const int64_t half = D / 2, width = (H + 2 * KV) * D;
  at::parallel_for(0, Tn, 4, [&](int64_t begin, int64_t end) {
    std::vector<float> x(D);
    for (int64_t t = begin; t < end; ++t) {
      T* row = qkv + t * width;
      const T* c = cos + t * D;
      const T* s = sin + t * D;
      for (int64_t h = 0; h < H + KV; ++h) {
        T* head = row + h * D;
        for (int64_t d = 0; d < D; ++d) x[d] = static_cast<float>(head[d]);
        for (int64_t d = 0; d < D; ++d) {
          const float swapped = x[d < half ? d + half : d - half];
          const float a = rnd<T>(x[d] * static_cast<float>(c[d]));
          const float b = rnd<T>(swapped * static_cast<float>(s[d]));
          head[d] = static_cast<T>(a + b);
        }
      }
      const int64_t slot = slots[t];
      for (int64_t h = 0; h < KV; ++h) {
        const T* k = row + (H + h) * D;
        const T* v = row + (H + KV + h) * D;
        T* kd = kc + (h * slots_per_head + slot) * D;
        T* vd = vc + (h * slots_per_head + slot) * D;
        for (int64_t d = 0; d < D; ++d) kd[d] = k[d];
        for (int64_t d = 0; d < D; ++d) vd[d] = v[d];
      }
    }
  });
}

// out[i, j] <- T(T(silu(gate[i, j])) * up[i, j]) with gate_up = [gate | up] along the last dim.
template <typename T>
void silu_mul_impl(const T* gu, T* out, int64_t N, int64_t I) {
  at::parallel_for(0, N, 4, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const T* g = gu + i * 2 * I;
      const T* u = g + I;
      T* o = out + i * I;
      for (int64_t j = 0; j < I; ++j) {
        const float a = static_cast<float>(g[j]);
        const float silu = rnd<T>(a / (1.f + std::exp(std::min(-a, 80.f))));  // finite: -ffast-math
        o[j] = static_cast<T>(silu * static_cast<float>(u[j]));
      }
    }
  });
}

}  // namespace augury
