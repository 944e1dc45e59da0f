// Q8_0 weights (q8.h) as ops: the LM head's logits and the embedding lookup.
#include <torch/extension.h>
#include <c10/util/BFloat16.h>
#include <cstdint>

#include "q8.h"

namespace {

using BF16 = c10::BFloat16;

augury::Q8Weight q8_view(const at::Tensor& codes, const at::Tensor& d) {
  TORCH_CHECK(codes.device().is_cpu() && codes.scalar_type() == at::kByte && codes.dim() == 2 &&
                  codes.is_contiguous(),
              "INT8 codes must be a contiguous (N, K) uint8 CPU tensor");
  augury::Q8Weight w;
  w.N = codes.size(0);
  w.K = codes.size(1);
  TORCH_CHECK(w.K % augury::Q4_GROUP == 0, "in_features must be a multiple of 32, got ", w.K);
  TORCH_CHECK(d.scalar_type() == at::kShort && d.is_contiguous() && d.dim() == 2 &&
                  d.size(0) == w.N && d.size(1) == w.K / augury::Q4_GROUP,
              "INT8 scales must be a contiguous (N, K / 32) int16 tensor of float16 bits");
  w.codes = codes.data_ptr<uint8_t>();
  w.d = reinterpret_cast<const uint16_t*>(d.data_ptr<int16_t>());
  return w;
}

thread_local augury::Q8Act q8_scratch;

}  // namespace

// x (M, K) float32/bfloat16 @ the Q8_0 weight^T -> (M, N) float32 (logits want full precision).
at::Tensor q8_linear(at::Tensor x, at::Tensor codes, at::Tensor d) {
  const augury::Q8Weight w = q8_view(codes, d);
  x = augury::quantize_input(q8_scratch, x, w.K, "q8_linear");
  auto out = at::empty({x.size(0), w.N}, x.options().dtype(at::kFloat));
  augury::q8_gemm(w, q8_scratch, out.data_ptr<float>(), w.N);
  return out;
}

// Rows `ids` (any shape, int64) of the Q8_0 weight -> (*ids.shape, K) bfloat16.
at::Tensor q8_embed(at::Tensor ids, at::Tensor codes, at::Tensor d) {
  const augury::Q8Weight w = q8_view(codes, d);
  TORCH_CHECK(ids.device().is_cpu() && ids.scalar_type() == at::kLong,
              "ids must be an int64 CPU tensor");
  ids = ids.contiguous();
  const int64_t* ip = ids.data_ptr<int64_t>();
  for (int64_t i = 0; i < ids.numel(); ++i)
    TORCH_CHECK(ip[i] >= 0 && ip[i] < w.N, "token id ", ip[i], " out of range [0, ", w.N, ")");
  auto shape = ids.sizes().vec();
  shape.push_back(w.K);
  auto out = at::empty(shape, ids.options().dtype(at::kBFloat16));
  augury::q8_lookup(w, ip, ids.numel(), out.data_ptr<BF16>());
  return out;
}

void bind_q8(pybind11::module& m) {
  m.def("q8_linear", &q8_linear, "x @ Q8_0 weight^T -> float32 (CPU, AVX-512 VNNI)",
        pybind11::call_guard<pybind11::gil_scoped_release>());
  m.def("q8_embed", &q8_embed, "rows of a Q8_0 weight -> bfloat16 (CPU)",
        pybind11::call_guard<pybind11::gil_scoped_release>());
}
