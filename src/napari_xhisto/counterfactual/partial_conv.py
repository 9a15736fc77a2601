"""Partial convolution (Liu et al. 2018, "Image inpainting for irregular holes using partial
convolutions"), the building block of the inpainter of seed 001.

For a window with input ``X``, hole mask ``M`` (1 = valid, 0 = hole) and kernel ``W``::

    x' = W^T (X * M) * sum(1) / sum(M) + b     if sum(M) > 0
    x' = 0                                     otherwise
    m' = 1 if sum(M) > 0 else 0                (mask update)

``sum(1)`` is the window area ``k_h * k_w`` (the mask has one channel shared by all input
channels). Hole pixels enter only multiplied by zero, so their values never matter.

Soft masks (values in (0, 1), as a mask network produces while it trains) stay differentiable:
the renormalisation uses ``sum(1) / max(sum(M), 1)`` and the updated mask is
``min(sum(M), 1)``. For binary masks this is exactly the formula above (``sum(M)`` is then an
integer, 0 or at least 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PartialConv2d(nn.Conv2d):
    """``nn.Conv2d`` that takes ``(x, mask)`` and returns ``(x', mask')``.

    Parameters are those of ``nn.Conv2d`` (``groups`` and ``dilation`` other than 1 are not
    supported). ``mask`` is ``(N, 1, H, W)`` float, 1 = valid, 0 = hole; it may be None
    (all valid, then this is an ordinary convolution with zero padding).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 bias: bool = True):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         bias=bias)
        self.register_buffer("mask_kernel", torch.ones(1, 1, *self.kernel_size),
                             persistent=False)
        self.window_area = float(self.kernel_size[0] * self.kernel_size[1])

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None):
        if mask is None:
            mask = torch.ones_like(x[:, :1])
        if mask.shape[1] != 1 or mask.shape[-2:] != x.shape[-2:]:
            raise ValueError(f"mask must be (N, 1, H, W) matching x {tuple(x.shape)}, "
                             f"got {tuple(mask.shape)}")
        mask = mask.to(x.dtype)
        msum = F.conv2d(mask, self.mask_kernel.to(x.dtype), stride=self.stride,
                        padding=self.padding)
        update = msum.clamp(0.0, 1.0)
        ratio = self.window_area / msum.clamp(min=1.0) * update
        raw = F.conv2d(x * mask, self.weight, None, self.stride, self.padding)
        out = raw * ratio
        if self.bias is not None:
            out = (out + self.bias.view(1, -1, 1, 1)) * update
        return out, update


def partial_conv_reference(x, mask, weight, bias, stride: int = 1, padding: int = 0):
    """Slow reference of a partial convolution for binary masks (explicit loops; tests only).

    ``x`` (C, H, W), ``mask`` (H, W) of 0/1, ``weight`` (O, C, kh, kw), ``bias`` (O,) or None;
    numpy or torch (converted to float64 numpy). Returns ``(out (O, H', W'), new_mask (H', W'))``.
    """
    import numpy as np

    x = np.asarray(x, np.float64)
    mask = np.asarray(mask, np.float64)
    w = np.asarray(weight, np.float64)
    b = np.zeros(w.shape[0]) if bias is None else np.asarray(bias, np.float64)
    c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.zeros((c, h + 2 * padding, wd + 2 * padding))
    mp = np.zeros((h + 2 * padding, wd + 2 * padding))
    xp[:, padding:padding + h, padding:padding + wd] = x
    mp[padding:padding + h, padding:padding + wd] = mask
    ho = (h + 2 * padding - kh) // stride + 1
    wo = (wd + 2 * padding - kw) // stride + 1
    out = np.zeros((o, ho, wo))
    new_mask = np.zeros((ho, wo))
    for i in range(ho):
        for j in range(wo):
            win_m = mp[i * stride:i * stride + kh, j * stride:j * stride + kw]
            valid = win_m.sum()
            if valid == 0:
                continue  # output 0, mask stays a hole
            new_mask[i, j] = 1.0
            win_x = xp[:, i * stride:i * stride + kh, j * stride:j * stride + kw]
            for k in range(o):
                acc = 0.0
                for ci in range(c):
                    for u in range(kh):
                        for v in range(kw):
                            if win_m[u, v]:
                                acc += w[k, ci, u, v] * win_x[ci, u, v]
                out[k, i, j] = acc * (kh * kw) / valid + b[k]
    return out, new_mask
