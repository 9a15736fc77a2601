"""Keep triton out of processes that draw with OpenGL.

torch >= 2.14 imports ``triton`` whenever ``torch._dynamo`` loads (torchvision loads it). triton
ships its own LLVM; loaded into a process where Mesa's llvmpipe (software OpenGL: VMs, remote
desktops, Xvfb) already runs, the two collide and the process dies with a segmentation fault.
Our widgets import torch lazily, after napari has made its OpenGL context, so they are exposed.

We never need triton (no ``torch.compile`` on GPU kernels in the viewer), so the widgets mark it
unavailable before torch loads: ``torch.utils._triton.has_triton_package()`` then says False and
torch runs as on a machine without triton. ``XHISTO_ALLOW_TRITON=1`` turns this off.
"""

from __future__ import annotations

import os
import sys


def block_triton() -> bool:
    """Make ``import triton`` fail in this process, unless it is already loaded or allowed.

    Returns
    -------
    bool
        True when triton is now blocked.
    """
    if os.environ.get("XHISTO_ALLOW_TRITON") == "1" or sys.modules.get("triton") is not None:
        return False
    sys.modules["triton"] = None  # import triton -> ImportError, as when it is not installed
    return True
