"""torch loaded after napari's OpenGL context must not crash the viewer (see _torch_guard)."""

import subprocess
import sys

import pytest

SCRIPT = """
import napari, numpy as np
from qtpy.QtWidgets import QApplication
import napari_xhisto._widgets  # what napari imports before a widget of ours loads torch
viewer = napari.Viewer(show=True)
viewer.add_image(np.zeros((64, 64)))
QApplication.processEvents()
import torchvision  # loads torch._dynamo, which imports triton when it can
import torch
print("triton blocked:", sys.modules.get("triton") is None, float(torch.ones(2).sum()))
viewer.close()
"""


@pytest.mark.viewer
def test_torch_after_opengl_does_not_crash():
    out = subprocess.run([sys.executable, "-c", "import sys\n" + SCRIPT], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "triton blocked: True 2.0" in out.stdout


def test_block_triton_respects_opt_out():
    code = ("import os, sys; os.environ['XHISTO_ALLOW_TRITON'] = '1';"
            "from napari_xhisto._torch_guard import block_triton;"
            "print(block_triton(), 'triton' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["False", "False"]
