"""Compile-on-first-use loading of the C++ kernels, with a clean fallback.

The build goes to torch's extension cache (TORCH_EXTENSIONS_DIR, by default under
~/.cache/torch_extensions) and takes ~30-60 s once per machine; later processes load it in
milliseconds. Set AUGURY_KERNELS=0 to disable the kernels (the torch path is used instead).
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from types import ModuleType

log = logging.getLogger(__name__)
HERE = Path(__file__).parent


@functools.cache
def paged_attention_ops() -> ModuleType | None:
    """The compiled paged-attention module, or None when kernels are off or cannot be built."""
    if os.environ.get("AUGURY_KERNELS", "1") == "0":
        return None
    try:
        from torch.utils.cpp_extension import load

        return load(
            name="augury_paged_attention",
            sources=[str(HERE / "paged_attention.cpp")],
            extra_cflags=["-O3", "-march=native", "-fopenmp", "-ffast-math"],
            extra_ldflags=["-fopenmp"],
            verbose=False,
        )
    except Exception as exc:  # no compiler, no ninja, unsupported platform...
        log.warning("C++ kernels unavailable (%s); using the torch attention path", exc)
        return None
