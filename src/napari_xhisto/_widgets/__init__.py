"""_widgets: the docked widgets (Qt views and their controllers)."""

from .._torch_guard import block_triton

# before any widget imports torch, after napari's OpenGL context exists: see _torch_guard
block_triton()
