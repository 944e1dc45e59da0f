// The Python module of Augury's C++ kernels: paged_attention.cpp, fused.cpp, q4.cpp and
// q8.cpp.
#include <torch/extension.h>

at::Tensor paged_decode_attention(at::Tensor q, at::Tensor k_cache, at::Tensor v_cache,
                                  at::Tensor block_tables, at::Tensor context_lens, double scale);
at::Tensor add_rms_norm(c10::optional<at::Tensor> x, at::Tensor residual, at::Tensor weight,
                        double eps);
void rotary_cache_write(at::Tensor qkv, at::Tensor cos, at::Tensor sin, at::Tensor k_cache,
                        at::Tensor v_cache, at::Tensor slot_mapping, int64_t num_heads,
                        int64_t num_kv_heads);
at::Tensor silu_mul(at::Tensor gate_up);
void bind_q4(pybind11::module& m);
void bind_q8(pybind11::module& m);

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("paged_decode_attention", &paged_decode_attention, "paged decode attention (CPU)");
  m.def("add_rms_norm", &add_rms_norm, "residual add + RMSNorm (CPU)");
  m.def("rotary_cache_write", &rotary_cache_write, "rotary in place + KV cache write (CPU)");
  m.def("silu_mul", &silu_mul, "SiLU(gate) * up (CPU)");
  bind_q4(m);
  bind_q8(m);
  // torch sets a thread's OpenMP thread count at its first parallel op, once, from the last
  // count any thread set; this module has its own copy of that once-per-thread flag (an inline
  // function's thread_local), so augury/threads.py calls this before setting a count.
  m.def("init_threads", [] { at::internal::lazy_init_num_threads(); },
        "torch's first-parallel-op thread setup, for this module, in the calling thread");
}
