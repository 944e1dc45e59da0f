// Fused elementwise kernels for the decoder's small per-layer ops (CPU, float32 and bfloat16).
//
// A decode step of a 30-layer model dispatches ~30 small PyTorch ops per layer (norms, residual
// adds, rotary, cache writes, SiLU); at 2-5 us each they cost milliseconds per step. Each
// kernel here replaces one such chain by one pass over memory, and rounds to the storage dtype
// exactly where the chain it replaces rounds (every PyTorch op on bfloat16 computes in float32
// and rounds its result), so bfloat16 outputs match the torch path; float32 ones differ only by
// summation order.
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "fused.h"

using augury::add_rms_norm_impl;
using augury::rotary_cache_impl;
using augury::silu_mul_impl;

namespace {

void check_float(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be on the CPU");
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kBFloat16, name,
              " must be float32 or bfloat16");
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
}

}  // namespace

// Returns rms_norm(residual (+ x)) * weight; residual is updated in place when x is given.
at::Tensor add_rms_norm(c10::optional<at::Tensor> x, at::Tensor residual, at::Tensor weight,
                        double eps) {
  check_float(residual, "residual");
  check_float(weight, "weight");
  TORCH_CHECK(residual.dim() == 2 && weight.dim() == 1 && weight.size(0) == residual.size(1),
              "residual must be (N, H) and weight (H,)");
  TORCH_CHECK(weight.scalar_type() == residual.scalar_type(), "weight and residual dtypes differ");
  if (x.has_value()) {
    check_float(*x, "x");
    TORCH_CHECK(x->sizes() == residual.sizes() && x->scalar_type() == residual.scalar_type(),
                "x and residual must match in shape and dtype");
  }
  auto out = at::empty_like(residual);
  const int64_t N = residual.size(0), H = residual.size(1);
  if (residual.scalar_type() == at::kFloat) {
    add_rms_norm_impl<float>(x ? x->data_ptr<float>() : nullptr, residual.data_ptr<float>(),
                             weight.data_ptr<float>(), out.data_ptr<float>(), N, H,
                             static_cast<float>(eps));
  } else {
    using B = c10::BFloat16;
    add_rms_norm_impl<B>(x ? x->data_ptr<B>() : nullptr, residual.data_ptr<B>(),
                         weight.data_ptr<B>(), out.data_ptr<B>(), N, H, static_cast<float>(eps));
  }
  return out;
}

// qkv (T, (H + 2 KV) * D): q and k heads rotated in place; k and v heads written to the caches
// (KV, NB, BS, D) at slot_mapping (T,). cos and sin are (T, D) in qkv's dtype.
void rotary_cache_write(at::Tensor qkv, at::Tensor cos, at::Tensor sin, at::Tensor k_cache,
                        at::Tensor v_cache, at::Tensor slot_mapping, int64_t num_heads,
                        int64_t num_kv_heads) {
  for (auto* t : {&qkv, &cos, &sin, &k_cache, &v_cache}) check_float(*t, "tensor");
  const auto dtype = qkv.scalar_type();
  TORCH_CHECK(cos.scalar_type() == dtype && sin.scalar_type() == dtype &&
                  k_cache.scalar_type() == dtype && v_cache.scalar_type() == dtype,
              "qkv, tables and caches must share a dtype");
  TORCH_CHECK(k_cache.dim() == 4 && v_cache.sizes() == k_cache.sizes(), "caches must be 4-D");
  TORCH_CHECK(k_cache.size(0) == num_kv_heads, "cache heads != num_kv_heads");
  const int64_t Tn = qkv.size(0), D = k_cache.size(3);
  TORCH_CHECK(qkv.dim() == 2 && qkv.size(1) == (num_heads + 2 * num_kv_heads) * D,
              "qkv must be (T, (H + 2 KV) * D)");
  TORCH_CHECK(cos.numel() == Tn * D && sin.numel() == Tn * D, "tables must be (T, D)");
  TORCH_CHECK(slot_mapping.scalar_type() == at::kLong && slot_mapping.numel() == Tn &&
                  slot_mapping.is_contiguous(),
              "slot_mapping must be (T,) int64");
  const int64_t slots_per_head = k_cache.size(1) * k_cache.size(2);
  const int64_t* slots = slot_mapping.data_ptr<int64_t>();
  for (int64_t t = 0; t < Tn; ++t)
    TORCH_CHECK(slots[t] >= 0 && slots[t] < slots_per_head, "slot ", slots[t], " out of range");
  if (dtype == at::kFloat) {
    rotary_cache_impl<float>(qkv.data_ptr<float>(), cos.data_ptr<float>(), sin.data_ptr<float>(),
                             k_cache.data_ptr<float>(), v_cache.data_ptr<float>(), slots, Tn,
                             num_heads, num_kv_heads, D, slots_per_head);
  } else {
    using B = c10::BFloat16;
    rotary_cache_impl<B>(qkv.data_ptr<B>(), cos.data_ptr<B>(), sin.data_ptr<B>(),
                         k_cache.data_ptr<B>(), v_cache.data_ptr<B>(), slots, Tn, num_heads,
                         num_kv_heads, D, slots_per_head);
  }
}

// gate_up (N, 2 I) -> (N, I): silu(gate) * up.
at::Tensor silu_mul(at::Tensor gate_up) {
  check_float(gate_up, "gate_up");
  TORCH_CHECK(gate_up.dim() == 2 && gate_up.size(1) % 2 == 0, "gate_up must be (N, 2 I)");
  const int64_t N = gate_up.size(0), I = gate_up.size(1) / 2;
  auto out = at::empty({N, I}, gate_up.options());
  if (gate_up.scalar_type() == at::kFloat) {
    silu_mul_impl<float>(gate_up.data_ptr<float>(), out.data_ptr<float>(), N, I);
  } else {
    using B = c10::BFloat16;
    silu_mul_impl<B>(gate_up.data_ptr<B>(), out.data_ptr<B>(), N, I);
  }
  return out;
}
