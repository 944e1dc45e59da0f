// INT4 linear layers (q4.h) as an op, and the decode stack: every decoder layer of a step of a
// few rows in one call.
//
// A decode step of the 30-layer model is ~9 ops per layer; through Python and the PyTorch
// dispatcher each costs 5-15 us beyond its arithmetic, ~3 ms per step, as much as reading the
// INT4 weights. DecodeStack holds pointers to every layer's weights and KV cache (taken once)
// and runs norm -> QKV -> rotary + cache write -> paged attention -> O -> norm -> gate/up ->
// SiLU -> down for all layers without returning to Python. Each op is the same code as the
// separate kernels (fused.h, attention.h, q4.h), so its results are the op-by-op path's.
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <algorithm>
#include <cstdint>
#include <vector>

#include "attention.h"
#include "fused.h"
#include "q4.h"

namespace {

using BF16 = c10::BFloat16;

augury::Q4Weight q4_view(const at::Tensor& nib, const at::Tensor& dm) {
  TORCH_CHECK(nib.device().is_cpu() && nib.scalar_type() == at::kByte && nib.dim() == 2 &&
                  nib.is_contiguous(),
              "INT4 codes must be a contiguous (N, K / 2) uint8 CPU tensor");
  augury::Q4Weight w;
  w.N = nib.size(0);
  w.K = nib.size(1) * 2;
  TORCH_CHECK(w.K % augury::Q4_GROUP == 0, "in_features must be a multiple of 32, got ", w.K);
  const int64_t G = w.K / augury::Q4_GROUP;
  TORCH_CHECK(dm.scalar_type() == at::kShort && dm.is_contiguous() && dm.dim() == 3 &&
                  dm.size(0) == 2 && dm.size(1) == w.N && dm.size(2) == G,
              "INT4 scales must be a contiguous (2, N, K / 32) int16 tensor of float16 bits");
  w.nib = nib.data_ptr<uint8_t>();
  w.d = reinterpret_cast<const uint16_t*>(dm.data_ptr<int16_t>());
  w.m = w.d + w.N * G;
  return w;
}

thread_local augury::Q8Act scratch_act;

}  // namespace

// x (M, K) float32/bfloat16 @ the INT4 weight^T -> (M, N) in x's dtype.
at::Tensor q4_linear(at::Tensor x, at::Tensor nib, at::Tensor dm) {
  const augury::Q4Weight w = q4_view(nib, dm);
  x = augury::quantize_input(scratch_act, x, w.K, "q4_linear");
  auto out = at::empty({x.size(0), w.N}, x.options());
  if (x.scalar_type() == at::kBFloat16) {
    augury::q4_gemm(w, scratch_act, out.data_ptr<BF16>(), w.N);
  } else {
    augury::q4_gemm(w, scratch_act, out.data_ptr<float>(), w.N);
  }
  return out;
}

class DecodeStack {
 public:
  // Per layer, in order: input norm weight, qkv codes, qkv scales, o codes, o scales,
  // post-attention norm weight, gate_up codes, gate_up scales, down codes, down scales,
  // key cache, value cache (bfloat16; caches (KV, NB, BS, D)).
  DecodeStack(std::vector<at::Tensor> tensors, at::Tensor final_norm, int64_t num_heads,
              int64_t num_kv_heads, double eps)
      : keep_(std::move(tensors)), final_norm_(std::move(final_norm)), H_(num_heads),
        KV_(num_kv_heads), eps_(static_cast<float>(eps)) {
    TORCH_CHECK(!keep_.empty() && keep_.size() % kPerLayer == 0,
                "DecodeStack takes 12 tensors per layer");
    for (size_t i = 0; i < keep_.size(); i += kPerLayer) {
      Layer l;
      l.ln_in = bf16(keep_[i], "input norm");
      l.qkv = q4_view(keep_[i + 1], keep_[i + 2]);
      l.o = q4_view(keep_[i + 3], keep_[i + 4]);
      l.ln_post = bf16(keep_[i + 5], "post-attention norm");
      l.gate_up = q4_view(keep_[i + 6], keep_[i + 7]);
      l.down = q4_view(keep_[i + 8], keep_[i + 9]);
      const at::Tensor& kc = keep_[i + 10];
      const at::Tensor& vc = keep_[i + 11];
      TORCH_CHECK(kc.dim() == 4 && kc.sizes() == vc.sizes() && kc.size(0) == KV_,
                  "caches must be (num_kv_heads, blocks, block_size, head_dim)");
      l.kc = const_cast<BF16*>(bf16(kc, "key cache"));
      l.vc = const_cast<BF16*>(bf16(vc, "value cache"));
      layers_.push_back(l);
    }
    const at::Tensor& kc = keep_[10];
    NB_ = kc.size(1);
    BS_ = kc.size(2);
    D_ = kc.size(3);
    hidden_ = layers_[0].o.N;
    intermediate_ = layers_[0].down.K;
    TORCH_CHECK(layers_[0].qkv.N == (H_ + 2 * KV_) * D_ && layers_[0].qkv.K == hidden_ &&
                    layers_[0].o.K == H_ * D_ && layers_[0].gate_up.N == 2 * intermediate_,
                "layer shapes do not fit the heads and caches");
    TORCH_CHECK(final_norm_.numel() == hidden_, "final norm must be (hidden,)");
    bf16(final_norm_, "final norm");
  }

  // residual (T, hidden) bfloat16: the embeddings, updated in place; cos, sin (T, D) bfloat16;
  // slots (T,), tables (T, max_blocks) and lens (T,) int64: each row's cache slot, block table
  // and context length (this token included). Returns the final norm's output (T, hidden).
  at::Tensor forward(at::Tensor residual, at::Tensor cos, at::Tensor sin, at::Tensor slots,
                     at::Tensor tables, at::Tensor lens) {
    const int64_t T = residual.size(0);
    TORCH_CHECK(residual.dim() == 2 && residual.size(1) == hidden_, "residual must be (T, ",
                hidden_, ")");
    bf16(residual, "residual");
    TORCH_CHECK(cos.numel() == T * D_ && sin.numel() == T * D_, "rotary tables must be (T, D)");
    bf16(cos, "cos");
    bf16(sin, "sin");
    for (const auto* t : {&slots, &tables, &lens})
      TORCH_CHECK(t->scalar_type() == at::kLong && t->is_contiguous(), "int64 contiguous indices");
    TORCH_CHECK(slots.numel() == T && lens.numel() == T && tables.dim() == 2 &&
                    tables.size(0) == T,
                "slots, tables and lens need one row per token");
    const int64_t MB = tables.size(1), per_head = NB_ * BS_;
    const int64_t* sp = slots.data_ptr<int64_t>();
    const int64_t* tp = tables.data_ptr<int64_t>();
    const int64_t* lp = lens.data_ptr<int64_t>();
    for (int64_t t = 0; t < T; ++t) {
      TORCH_CHECK(sp[t] >= 0 && sp[t] < per_head, "slot ", sp[t], " out of range");
      TORCH_CHECK(lp[t] >= 1 && lp[t] <= MB * BS_, "context length ", lp[t], " out of range");
      for (int64_t j = 0; j < (lp[t] + BS_ - 1) / BS_; ++j)
        TORCH_CHECK(tp[t * MB + j] >= 0 && tp[t * MB + j] < NB_, "block id out of range");
    }
    const int64_t QKV = (H_ + 2 * KV_) * D_, I = intermediate_, Hd = hidden_;
    const float scale = 1.f / std::sqrt(static_cast<float>(D_));
    std::vector<BF16> h(T * Hd), qkv(T * QKV), attn(T * H_ * D_), o(T * Hd), gu(T * 2 * I),
        act(T * I), mlp(T * Hd);
    BF16* res = residual.data_ptr<BF16>();
    const BF16* cp = cos.data_ptr<BF16>();
    const BF16* snp = sin.data_ptr<BF16>();
    augury::Q8Act& xa = scratch_act;
    const BF16* prev = nullptr;  // the previous layer's MLP output, added to the residual
    for (const Layer& l : layers_) {
      augury::add_rms_norm_impl<BF16>(prev, res, l.ln_in, h.data(), T, Hd, eps_);
      xa.quantize(h.data(), Hd, T, Hd);
      augury::q4_gemm(l.qkv, xa, qkv.data(), QKV);
      augury::rotary_cache_impl<BF16>(qkv.data(), cp, snp, l.kc, l.vc, sp, T, H_, KV_, D_,
                                      per_head);
      augury::decode_rows<BF16>(qkv.data(), QKV, l.kc, l.vc, tp, MB, lp, T, H_, KV_, D_, NB_, BS_,
                                scale, attn.data());
      xa.quantize(attn.data(), H_ * D_, T, H_ * D_);
      augury::q4_gemm(l.o, xa, o.data(), Hd);
      augury::add_rms_norm_impl<BF16>(o.data(), res, l.ln_post, h.data(), T, Hd, eps_);
      xa.quantize(h.data(), Hd, T, Hd);
      augury::q4_gemm(l.gate_up, xa, gu.data(), 2 * I);
      augury::silu_mul_impl<BF16>(gu.data(), act.data(), T, I);
      xa.quantize(act.data(), I, T, I);
      augury::q4_gemm(l.down, xa, mlp.data(), Hd);
      prev = mlp.data();
    }
    auto out = at::empty_like(residual);
    augury::add_rms_norm_impl<BF16>(prev, res, final_norm_.data_ptr<BF16>(),
                                    out.data_ptr<BF16>(), T, Hd, eps_);
    return out;
  }

 private:
  static constexpr size_t kPerLayer = 12;
  struct Layer {
    const BF16* ln_in;
    const BF16* ln_post;
    augury::Q4Weight qkv, o, gate_up, down;
    BF16* kc;
    BF16* vc;
  };

  static const BF16* bf16(const at::Tensor& t, const char* name) {
    TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == at::kBFloat16 && t.is_contiguous(),
                name, " must be a contiguous bfloat16 CPU tensor");
    return t.data_ptr<BF16>();
  }

  std::vector<at::Tensor> keep_;  // owns what the raw pointers point into
  at::Tensor final_norm_;
  std::vector<Layer> layers_;
  int64_t H_, KV_, D_ = 0, NB_ = 0, BS_ = 0, hidden_ = 0, intermediate_ = 0;
  float eps_;
};

// Both release the GIL while they compute (as PyTorch's own ops do): a server's event loop
// streams tokens while the engine thread is in the decode stack.
void bind_q4(pybind11::module& m) {
  m.def("q4_linear", &q4_linear, "x @ INT4 weight^T (CPU, AVX-512 VNNI)",
        pybind11::call_guard<pybind11::gil_scoped_release>());
  pybind11::class_<DecodeStack>(m, "DecodeStack")
      .def(pybind11::init<std::vector<at::Tensor>, at::Tensor, int64_t, int64_t, double>())
      .def("forward", &DecodeStack::forward, pybind11::call_guard<pybind11::gil_scoped_release>());
}
