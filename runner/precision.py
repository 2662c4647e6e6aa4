"""Which weight dtype a training run gets on CPU: bf16 where the CPU has bf16 instructions.

With AVX512-BF16 or AMX (Intel Cooper Lake, Sapphire Rapids and later; AMD Zen 4 and later), oneDNN
runs bf16 matrix products several times faster than float32; without them bf16 is emulated and
slower than float32, so the run stays in float32. The LoRA weights stay float32 either way (PEFT
upcasts adapters of a bf16 model), so the optimizer updates full-precision weights.
"""

from __future__ import annotations

import functools
import platform
from pathlib import Path

# /proc/cpuinfo flags that mean native bf16 dot products.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.lru_cache(maxsize=1)
def cpu_bf16_support() -> tuple[bool, str]:
    """(whether this CPU computes bf16 natively, a few words saying why or why not)."""
    cpuinfo = Path("/proc/cpuinfo")
    if platform.system() == "Linux" and cpuinfo.is_file():
        try:
            text = cpuinfo.read_text(errors="replace")
        except OSError:
            text = ""
        flags: set[str] = set()
        for line in text.splitlines():
            if line.startswith("flags"):
                flags = set(line.partition(":")[2].split())
                break
        if flags:
            found = [flag for flag in BF16_CPU_FLAGS if flag in flags]
            if found:
                return True, f"CPU flags {', '.join(found)}"
            return False, "this CPU has neither avx512_bf16 nor amx_bf16"
    try:
        import torch

        if torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return True, "oneDNN reports bf16 support"
    except (AttributeError, RuntimeError, ImportError):
        pass
    return False, "no native bf16 found on this CPU"
