"""Decoders of the attribution network (seed 001): the lean one and the first one.

Both take the tapped classifier features (shallow to deep) and give the two channels
``c1, c2`` whose ratio ``|c1| / (|c1| + |c2|)`` is the attribution. :class:`LeanDecoder` is the
seed's decoder (1 x 1 convolutions, attention-gated skips, a 2-channel head) made cheap: narrow,
most of its work at the coarse scales, and run on channels-last tensors (oneDNN's 1 x 1
convolutions and nearest upsampling are several times faster on them than on NCHW here).
:class:`AttributionDecoder` is the first, full-width decoder, kept so its files still load.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ModelError

__all__ = ["AttributionDecoder", "LeanDecoder", "make_decoder"]


class _FeatureFilter(nn.Module):
    """``x * sigmoid(W_m relu(W_l x (+ W_g g) + b_l) + b_m)``: additive attention on features."""

    def __init__(self, c_x: int, c_g: int = 0):
        super().__init__()
        inner = max(4, c_x // 2)
        self.w_l = nn.Conv2d(c_x, inner, 1)
        self.w_g = nn.Conv2d(c_g, inner, 1, bias=False) if c_g else None
        self.w_m = nn.Conv2d(inner, 1, 1)

    def forward(self, x, g=None):
        a = self.w_l(x)
        if self.w_g is not None:
            a = a + self.w_g(g)
        return x * torch.sigmoid(self.w_m(torch.relu(a)))


class AttributionDecoder(nn.Module):
    """The first decoder (full tap widths, full-scale convolutions); kept to load its files.

    Feature filter, attention gates, decoder blocks and the 2-channel head. New networks use
    :class:`LeanDecoder` (same structure, a fraction of the cost).

    Parameters
    ----------
    channels : sequence of int
        Channels of the tapped features, shallow to deep.
    kernel : int
        Kernel of the decoder convolutions (the seed: 1).
    start : {"on", "off"}
        Initial output: everything marked (training shrinks the mask to what matters) or nothing.
    """

    def __init__(self, channels, *, kernel: int = 3, start: str = "off"):
        super().__init__()
        channels = [int(c) for c in channels]
        self.channels, self.kernel = channels, int(kernel)
        self.filter = _FeatureFilter(channels[-1])
        self.ups = nn.ModuleList()
        self.gates = nn.ModuleList()
        self.merges = nn.ModuleList()
        for i in range(len(channels) - 2, -1, -1):  # deep to shallow
            self.ups.append(nn.Conv2d(channels[i + 1], channels[i], kernel, padding=kernel // 2))
            self.gates.append(_FeatureFilter(channels[i], channels[i]))
            self.merges.append(nn.Conv2d(2 * channels[i], channels[i], 1))
        self.head = nn.Conv2d(channels[0], 2, 1)
        _init_decoder(self, start)

    def forward(self, feats: list[torch.Tensor], size) -> torch.Tensor:
        """``(N, 2, H, W)`` channels ``c1, c2`` at ``size`` from the tapped features."""
        h = self.filter(feats[-1])
        for up, gate, merge, skip in zip(self.ups, self.gates, self.merges, feats[-2::-1]):
            h = torch.relu(up(F.interpolate(h, size=skip.shape[-2:], mode="nearest")))
            h = torch.relu(merge(torch.cat([h, gate(skip, h)], dim=1)))
        if tuple(h.shape[-2:]) != tuple(size):
            h = F.interpolate(h, size=tuple(size), mode="nearest")
        return self.head(h)

    kind = "unet"

    def describe(self) -> dict:
        return {"decoder": self.kind, "channels": list(self.channels), "kernel": self.kernel}


_CL = torch.channels_last


def _conv(conv: nn.Conv2d, x: torch.Tensor, rows=None) -> torch.Tensor:
    """``conv`` (or output channels ``rows`` of it) on ``x``; channels-last in, channels-last out."""
    w, b = conv.weight, conv.bias
    if rows is not None:
        w, b = w[rows], None if b is None else b[rows]
    return F.conv2d(x, w, b, padding=conv.padding)


def _up(low: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Nearest upsampling of ``low`` to ``like``'s size (a fast kernel for channels-last)."""
    if low.shape[-2:] == like.shape[-2:]:
        return low
    return F.interpolate(low, size=like.shape[-2:], mode="nearest")


class _LeanBlock(nn.Module):
    """One decoder step: upsample + convolve ``h``, merge it with the gated, projected skip.

    Written out, with ``u = relu(W_u up(h))`` and the skip projected to ``width`` channels
    (``s = P skip``)::

        gate = sigmoid(w_m relu(W_l s + W_g u + b_l) + b_m)
        out  = relu(W_a u + W_b (gate * s) + b)

    With 1 x 1 convolutions the terms in ``u`` are computed at the coarse scale and upsampled
    once (nearest upsampling commutes with pointwise maps), and ``P`` is folded into ``W_l`` and
    ``W_b`` (the rows of one weight), so the fine scale sees two products with the skip, two
    upsampled additions and the 1-channel gate.
    """

    def __init__(self, c_skip: int, width: int, gate_width: int, kernel: int):
        super().__init__()
        self.width, self.gate_width, self.kernel = width, gate_width, kernel
        self.up = nn.Conv2d(width, width, kernel, padding=kernel // 2)
        self.low = nn.Conv2d(width, gate_width + width, 1)     # [W_g u + b_l ; W_a u + b]
        self.skip = nn.Conv2d(c_skip, gate_width + width, 1, bias=False)  # [W_l P ; W_b P]
        self.w_m = nn.Conv2d(gate_width, 1, 1)

    def forward(self, h: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """``h`` (N, width, h, w) and ``skip`` (N, c_skip, H, W), both channels-last."""
        gw = self.gate_width
        if self.kernel == 1:
            u = _conv(self.up, h).relu_()                        # at the coarse scale
        else:
            u = _conv(self.up, _up(h, skip)).relu_()
        # activations in place on fresh outputs (no op before needs its output back)
        gate_pre = _conv(self.skip, skip, slice(0, gw)) + _up(_conv(self.low, u, slice(0, gw)),
                                                               skip)
        gate = _conv(self.w_m, gate_pre.relu_()).sigmoid_()
        merged = _up(_conv(self.low, u, slice(gw, None)), skip)
        return torch.addcmul(merged, gate, _conv(self.skip, skip, slice(gw, None))).relu_()


class LeanDecoder(nn.Module):
    """The seed's decoder, lean: narrow, 1 x 1 convolutions, most work at the coarse scales.

    The deepest tap is projected to ``width`` channels and filtered (``x * sigmoid(W_m relu(
    W_l x + b_l) + b_m)``); three :class:`_LeanBlock` steps climb to the shallowest tap's scale,
    each merging the attention-gated skip of its scale; a 1 x 1 convolution gives ``c1, c2``.
    Features of any memory format are accepted; the traced encoder's are channels-last already.

    Parameters
    ----------
    channels : sequence of int
        Channels of the tapped features, shallow to deep.
    width : int
        Decoder channels (every tap is projected to this width).
    gate_width : int
        Channels of the attention gates' hidden layer.
    kernel : int
        Kernel of the upsampling convolutions (the seed: 1; a larger one runs at the fine
        scale and costs more).
    start : {"on", "off"}
        Initial output: everything marked or nothing.
    """

    kind = "lean"

    def __init__(self, channels, *, width: int = 8, gate_width: int = 4, kernel: int = 1,
                 start: str = "off"):
        super().__init__()
        channels = [int(c) for c in channels]
        self.channels, self.width = channels, int(width)
        self.gate_width, self.kernel = int(gate_width), int(kernel)
        if min(self.width, self.gate_width, self.kernel) < 1 or self.kernel % 2 == 0:
            raise ModelError(f"decoder width {width}, gate width {gate_width} and kernel {kernel}"
                             " must be positive, the kernel odd")
        self.proj = nn.Conv2d(channels[-1], self.width, 1)
        self.filter = _FeatureFilter(self.width)
        self.blocks = nn.ModuleList(_LeanBlock(c, self.width, self.gate_width, self.kernel)
                                    for c in channels[-2::-1])
        self.head = nn.Conv2d(self.width, 2, 1)
        _init_decoder(self, start)

    def forward(self, feats: list[torch.Tensor], size) -> torch.Tensor:
        """``(N, 2, H, W)`` channels ``c1, c2`` at ``size`` (channels-last memory)."""
        feats = [f.contiguous(memory_format=_CL) for f in feats]  # no-op for the traced encoder
        h = _conv(self.proj, feats[-1])
        f = self.filter
        h = h * _conv(f.w_m, _conv(f.w_l, h).relu_()).sigmoid_()
        for block, skip in zip(self.blocks, feats[-2::-1]):
            h = block(h, skip)
        if tuple(h.shape[-2:]) != tuple(size):
            h = F.interpolate(h, size=tuple(size), mode="nearest")
        return _conv(self.head, h)

    def describe(self) -> dict:
        return {"decoder": self.kind, "channels": list(self.channels), "width": self.width,
                "gate_width": self.gate_width, "kernel": self.kernel}


def _init_decoder(decoder: nn.Module, start: str) -> None:
    for m in decoder.modules():
        if isinstance(m, nn.Conv2d):  # random-normal initialisation as the seed
            nn.init.normal_(m.weight, std=(2.0 / (m.in_channels * m.kernel_size[0] ** 2)) ** 0.5)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    with torch.no_grad():  # start near "all" (|c1| >> |c2|) or "no" mask
        decoder.head.weight.mul_(0.1)
        decoder.head.bias.copy_(torch.tensor([1.0, 0.0] if start == "on" else [0.0, 1.0]))


def make_decoder(spec: dict, *, start: str = "off") -> nn.Module:
    """The decoder a spec (or a training config) describes.

    ``decoder: lean`` (with ``width``, ``gate_width``, ``kernel``) is :class:`LeanDecoder`; a
    spec without ``decoder`` is one of the first networks (:class:`AttributionDecoder`, full
    width, ``kernel`` 3 unless given), still loadable.
    """
    kind = spec.get("decoder", "unet")
    if kind == "lean":
        return LeanDecoder(spec["channels"], width=int(spec.get("width", 8)),
                           gate_width=int(spec.get("gate_width", 4)),
                           kernel=int(spec.get("kernel", 1)), start=start)
    if kind == "unet":
        return AttributionDecoder(spec["channels"], kernel=int(spec.get("kernel", 3)), start=start)
    raise ModelError(f"unknown attribution decoder {kind!r} (known: lean, unet); the file was "
                     "written by a newer napari-xhisto, or retrain it with "
                     "`xhisto train-attribution-net`")
