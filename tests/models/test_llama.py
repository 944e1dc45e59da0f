"""Building the model skeleton: cheap in memory (the weights come from the loaders)."""

from __future__ import annotations

import subprocess
import sys

SKELETON = """
import sys
import torch
from augury.models.config import LlamaConfig
from augury.models.llama import LlamaModel
cfg = LlamaConfig(vocab_size=1000, hidden_size=64, intermediate_size=128, num_layers=2,
                  num_heads=4, num_kv_heads=2, max_position_embeddings=128)
with torch.device("meta"):
    model = LlamaModel(cfg)
assert model.embed_tokens.weight.is_meta and model.rotary.cos.is_meta
model.rotary.build(torch.device("cpu"))
assert not model.rotary.cos.is_meta and model.rotary.cos.shape == (128, 16)
print("sympy" in sys.modules)
"""


def test_a_meta_skeleton_imports_no_symbolic_machinery() -> None:
    """Random init or rotary tables computed on the meta device pull in torch's Python meta
    kernels, sympy and ~800 modules: ~80 MB of every serving process."""
    out = subprocess.run(
        [sys.executable, "-c", SKELETON], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False"
