"""Compile-once loading of the C++ kernels, with a clean fallback.

The kernels (paged decode attention, fused norm/rotary/SiLU ops) are built (~60 s, `make
install` does it) into `_build/` beside this file, and a stamp records the hash of their sources
and flags. Later processes import the built module directly: no compiler, no lock.
`torch.utils.cpp_extension.load` takes a file lock on every call, and a process killed while
holding it (kill -9 during start-up) would make every later start wait forever; so it runs only
to build, a lock left by a dead builder is cleared first, and the build directory belongs to
this checkout alone. AUGURY_KERNELS=0 disables the kernels.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.machinery
import importlib.util
import logging
import os
import time
from pathlib import Path
from types import ModuleType

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
BUILD = HERE / "_build"
NAME = "augury_kernels"
SOURCES = [
    HERE / "paged_attention.cpp",
    HERE / "fused.cpp",
    HERE / "q4.cpp",
    HERE / "q8.cpp",
    HERE / "module.cpp",
]
HEADERS = [HERE / "attention.h", HERE / "fused.h", HERE / "q4.h", HERE / "q8.h"]
CFLAGS = ["-O3", "-march=native", "-fopenmp", "-ffast-math"]
# libmvec: glibc's vector math (exp over many scores at once); absent elsewhere, the build
# fails and the torch paths are used.
LDFLAGS = ["-fopenmp", "-lmvec"]
STALE_LOCK_SECONDS = 600


def _fingerprint() -> str:
    digest = hashlib.sha256()
    for source in SOURCES + HEADERS:
        digest.update(source.read_bytes())
    digest.update(" ".join(CFLAGS + LDFLAGS).encode())
    return digest.hexdigest()


def _import_built(path: Path) -> ModuleType:
    loader = importlib.machinery.ExtensionFileLoader(NAME, str(path))
    spec = importlib.util.spec_from_loader(NAME, loader)
    if spec is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def _build() -> ModuleType:
    import torch  # noqa: F401  (the extension links against libtorch: load it first)
    from torch.utils.cpp_extension import load

    BUILD.mkdir(exist_ok=True)
    lock = BUILD / "lock"
    if lock.exists() and time.time() - lock.stat().st_mtime > STALE_LOCK_SECONDS:
        lock.unlink(missing_ok=True)  # left by a builder that died
    module = load(
        name=NAME,
        sources=[str(s) for s in SOURCES],
        # The headers' hash as a flag: torch's rebuild check hashes sources and flags only.
        extra_cflags=[*CFLAGS, f"-DAUGURY_KERNELS_HASH={_fingerprint()[:16]}"],
        extra_ldflags=LDFLAGS,
        build_directory=str(BUILD),
        verbose=False,
    )
    (BUILD / "stamp").write_text(_fingerprint())
    return module


@functools.cache
def kernel_ops() -> ModuleType | None:
    """The compiled kernels module, or None when kernels are off or cannot be built."""
    if os.environ.get("AUGURY_KERNELS", "1") == "0":
        return None
    try:
        built = BUILD / f"{NAME}.so"
        stamp = BUILD / "stamp"
        if built.exists() and stamp.exists() and stamp.read_text() == _fingerprint():
            import torch  # noqa: F401  (libtorch first)

            return _import_built(built)
        return _build()
    except Exception as exc:  # no compiler, no ninja, unsupported platform...
        log.warning("C++ kernels unavailable (%s); using the torch paths", exc)
        return None
