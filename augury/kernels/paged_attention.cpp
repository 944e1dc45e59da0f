// Paged decode attention for the CPU: one query token per sequence, keys and values read in
// place from the block cache (no gather copy, no padding to the longest context).
//
// q:            (B, H, D)            float32 or bfloat16
// k/v cache:    (KV, NB, BS, D)      same dtype as q
// block_tables: (B, MB) int64        block ids per sequence (entries past the context unused)
// context_lens: (B,)    int64        tokens of each sequence in the cache (>= 1)
// returns       (B, H, D)            attention output, dtype of q
//
// Each (sequence, kv head) pair is one task: its G = H / KV query heads share every key and
// value row loaded. Two passes: scores (+ max), then exp-weights and the weighted sum of values.
// Consecutive rows of one sequence (a token and the drafts verified after it) share one task,
// each row's results bit-identical to computing it alone (attention.h, decode_rows).
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "attention.h"

namespace {

template <typename T>
void decode_impl(const at::Tensor& q, const at::Tensor& kc, const at::Tensor& vc,
                 const at::Tensor& tables, const at::Tensor& lens, double scale, at::Tensor& out) {
  const int64_t B = q.size(0), H = q.size(1), D = q.size(2);
  augury::decode_rows<T>(q.data_ptr<T>(), H * D, kc.data_ptr<T>(), vc.data_ptr<T>(),
                         tables.data_ptr<int64_t>(), tables.size(1), lens.data_ptr<int64_t>(), B,
                         H, kc.size(0), D, kc.size(1), kc.size(2), static_cast<float>(scale),
                         out.data_ptr<T>());
}

}  // namespace

at::Tensor paged_decode_attention(at::Tensor q, at::Tensor k_cache, at::Tensor v_cache,
                                  at::Tensor block_tables, at::Tensor context_lens, double scale) {
  TORCH_CHECK(q.dim() == 3 && k_cache.dim() == 4 && v_cache.dim() == 4, "bad ranks");
  TORCH_CHECK(q.scalar_type() == k_cache.scalar_type() && k_cache.scalar_type() == v_cache.scalar_type(),
              "q and caches must share a dtype");
  TORCH_CHECK(q.size(1) % k_cache.size(0) == 0, "heads must be a multiple of kv heads");
  TORCH_CHECK(block_tables.scalar_type() == at::kLong && context_lens.scalar_type() == at::kLong,
              "tables and lengths must be int64");
  q = q.contiguous();
  block_tables = block_tables.contiguous();
  context_lens = context_lens.contiguous();
  TORCH_CHECK(k_cache.is_contiguous() && v_cache.is_contiguous(), "caches must be contiguous");
  auto out = at::empty_like(q);
  if (q.scalar_type() == at::kFloat) {
    decode_impl<float>(q, k_cache, v_cache, block_tables, context_lens, scale, out);
  } else if (q.scalar_type() == at::kBFloat16) {
    decode_impl<c10::BFloat16>(q, k_cache, v_cache, block_tables, context_lens, scale, out);
  } else {
    TORCH_CHECK(false, "paged_decode_attention supports float32 and bfloat16");
  }
  return out;
}
