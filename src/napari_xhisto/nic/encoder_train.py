"""Train NIC patch encoders on synthetic tissue fields (seed 004's three unsupervised kinds).

* ``contrastive``: a siamese encoder and a small head that tells whether two patches are the same
  or neighbouring (overlapping, flipped/rotated) crops of one field, or crops of different fields
  or far-apart places (binary cross-entropy), as in Tellez et al.
* ``vae``: the encoder outputs a mean and log-variance; a decoder rebuilds the patch at 32 px;
  loss = mean squared error + ``beta`` x KL divergence. The code is the mean.
* ``bigan``: encoder E, generator G (code -> 32 px patch) and discriminator D(x, z) on (patch,
  code) pairs (a small BiGAN/ALI). The loss reported is D's (it falls as D learns).
* ``supervised``: no training: the classifier's penultimate features (``--model``, default demo).

Training is a generator yielding ``(step, steps)`` and returning ``(spec, net, losses)``; it is
seeded (same seed, same weights on one machine).
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from ..errors import ModelError
from .encoders import KINDS, build_net, default_spec

__all__ = ["FieldSampler", "render_fields", "train_encoder"]

DECODE_PX = 32


def render_fields(mpp: float, *, seed: int = 0, n_fields: int = 6, field_px: int = 512
                  ) -> list[np.ndarray]:
    """``n_fields`` RGB synthetic fields (``synth.SynthWorld``, mixed layout) of ``field_px``."""
    from ..synth.render import SynthWorld

    return [SynthWorld(field_px, field_px, seed=seed * 1000 + k, mpp=mpp, layout="mixed",
                       bank_seed=seed).render(0, 0, field_px, field_px)[0]
            for k in range(n_fields)]


class FieldSampler:
    """Random crops of a few rendered synthetic fields (``napari_xhisto.synth``) at ``mpp``."""

    def __init__(self, patch_px: int, mpp: float, *, seed: int = 0, n_fields: int = 6,
                 field_px: int | None = None, fields: list | None = None):
        self.patch_px = int(patch_px)
        if fields is None:
            fields = render_fields(mpp, seed=seed, n_fields=n_fields,
                                   field_px=int(field_px or max(4 * patch_px, 512)))
        self.fields = [np.asarray(f, np.uint8) for f in fields]
        side = min(min(f.shape[:2]) for f in self.fields)
        if side < 2 * patch_px:
            raise ModelError(f"training fields of {side} px are too small for {patch_px} px "
                             "patches (need twice the patch)")
        self.side = side
        self.rng = np.random.default_rng([seed, 7])

    def _crop(self, f: int, r: int, c: int, aug: int) -> np.ndarray:
        p = self.fields[f][r:r + self.patch_px, c:c + self.patch_px]
        p = np.rot90(p, aug % 4)
        return np.ascontiguousarray(p[:, ::-1] if aug >= 4 else p)

    def _place(self, n):
        hi = self.side - self.patch_px
        return (self.rng.integers(len(self.fields), size=n), self.rng.integers(0, hi + 1, n),
                self.rng.integers(0, hi + 1, n))

    def batch(self, n: int) -> np.ndarray:
        f, r, c = self._place(n)
        aug = self.rng.integers(8, size=n)
        return np.stack([self._crop(*a) for a in zip(f, r, c, aug)])

    def pairs(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``n`` pairs (a, b) and labels: 1 same-or-neighbour crop, 0 another field/place."""
        f, r, c = self._place(n)
        hi, half = self.side - self.patch_px, self.patch_px // 2
        same = self.rng.random(n) < 0.5
        f2, r2, c2 = self._place(n)
        shift_r = self.rng.integers(-half, half + 1, n)
        shift_c = self.rng.integers(-half, half + 1, n)
        r2 = np.where(same, np.clip(r + shift_r, 0, hi), r2)
        c2 = np.where(same, np.clip(c + shift_c, 0, hi), c2)
        f2 = np.where(same, f, f2)
        a = np.stack([self._crop(*t, int(x)) for *t, x in zip(f, r, c, self.rng.integers(8, size=n))])
        b = np.stack([self._crop(*t, int(x)) for *t, x in zip(f2, r2, c2, self.rng.integers(8, size=n))])
        return a, b, same.astype(np.float32)


def _decoder(code_size: int, width: int) -> nn.Module:
    ch = width * 4
    return nn.Sequential(
        nn.Linear(code_size, ch * 4 * 4), nn.Unflatten(1, (ch, 4, 4)), nn.LeakyReLU(0.2),
        nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1), nn.BatchNorm2d(ch // 2), nn.LeakyReLU(0.2),
        nn.ConvTranspose2d(ch // 2, ch // 4, 4, 2, 1), nn.BatchNorm2d(ch // 4), nn.LeakyReLU(0.2),
        nn.ConvTranspose2d(ch // 4, 3, 4, 2, 1))  # 4 -> 32 px, normalised units


class _Discriminator(nn.Module):
    def __init__(self, code_size: int, width: int):
        super().__init__()
        self.x = nn.Sequential(nn.Conv2d(3, width, 4, 2, 1), nn.LeakyReLU(0.2),
                               nn.Conv2d(width, width * 2, 4, 2, 1), nn.LeakyReLU(0.2),
                               nn.Conv2d(width * 2, width * 4, 4, 2, 1), nn.LeakyReLU(0.2),
                               nn.Flatten())
        self.z = nn.Sequential(nn.Linear(code_size, 128), nn.LeakyReLU(0.2))
        self.out = nn.Sequential(nn.Dropout(0.2), nn.Linear(width * 4 * 16 + 128, 1))

    def forward(self, x, z):
        return self.out(torch.cat([self.x(x), self.z(z)], 1)).squeeze(1)


def _small(x: torch.Tensor) -> torch.Tensor:
    return nn.functional.interpolate(x, size=(DECODE_PX, DECODE_PX), mode="area")


def train_encoder(kind: str, *, steps: int = 300, batch_size: int = 32, seed: int = 0,
                  patch_px: int = 128, mpp: float = 1.0, code_size: int = 128, width: int = 16,
                  lr: float = 1e-3, beta: float = 1e-3, model: str = "demo",
                  n_fields: int = 6, field_px: int | None = None, fields: list | None = None):
    """Train an encoder of ``kind``: a generator of ``(step, steps)`` returning
    ``(spec, net, losses)`` (``net`` None for ``supervised``; ``losses`` one per step).

    Parameters
    ----------
    kind : {"contrastive", "vae", "bigan", "supervised"}
    steps, batch_size, lr : training schedule (Adam).
    seed : int
        Seeds the fields, the crops and torch.
    patch_px, mpp, code_size, width : the network (see ``nic.encoders.ConvEncoder``).
    beta : float
        Weight of the VAE's KL term.
    model : str
        ``supervised`` only: the patch classifier (``models.load_model`` source).
    n_fields, field_px : the synthetic fields rendered for training.
    fields : list of ndarray, optional
        RGB fields (at ``mpp``) to crop from instead (see :func:`render_fields`).
    """
    if kind not in KINDS:
        raise ModelError(f"encoder kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if steps < 1 or batch_size < 2:
        raise ModelError(f"steps must be >= 1 and batch_size >= 2, got {steps}, {batch_size}")
    spec = default_spec(kind, patch_px=patch_px, mpp=mpp, code_size=code_size, width=width)
    if kind == "supervised":
        from ..models import load_model
        from .encoders import Encoder

        clf = load_model(model, device="cpu")
        spec.update(model=str(model), patch_px=int(clf.spec.network_input_size),
                    stride_px=int(clf.spec.network_input_size), mpp=float(clf.spec.mpp),
                    mean=list(clf.spec.mean), std=list(clf.spec.std), code_size=1)
        probe = Encoder(spec, None, classifier=clf)
        with torch.no_grad():
            spec["code_size"] = int(probe.forward(probe.preprocess(
                np.full((1, 8, 8, 3), 200, np.uint8))).shape[1])
        spec["training"] = {"kind": "supervised", "model": str(model)}
        yield 1, 1
        return spec, None, []
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    sampler = FieldSampler(patch_px, mpp, seed=seed, n_fields=n_fields, field_px=field_px,
                           fields=fields)
    mean = torch.tensor(spec["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(spec["std"]).view(1, 3, 1, 1)

    def prep(images):
        return (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0 - mean) / std

    net = build_net(spec)
    parts: dict[str, nn.Module] = {"encoder": net}
    if kind == "contrastive":
        parts["head"] = nn.Sequential(nn.Linear(2 * code_size, 64), nn.LeakyReLU(0.2),
                                      nn.Linear(64, 1))
    elif kind == "vae":
        parts["decoder"] = _decoder(code_size, width)
    else:
        parts["generator"] = _decoder(code_size, width)
        parts["discriminator"] = _Discriminator(code_size, width)
    for m in parts.values():
        m.train()
    bce = nn.functional.binary_cross_entropy_with_logits
    if kind == "bigan":
        opt_d = torch.optim.Adam(parts["discriminator"].parameters(), lr=lr, betas=(0.5, 0.999))
        opt = torch.optim.Adam(list(net.parameters()) + list(parts["generator"].parameters()),
                               lr=lr, betas=(0.5, 0.999))
    else:
        opt = torch.optim.Adam([p for m in parts.values() for p in m.parameters()], lr=lr)
    losses = []
    yield 0, steps
    for step in range(steps):
        if kind == "contrastive":
            a, b, same = sampler.pairs(batch_size)
            z = net(prep(np.concatenate([a, b])))
            za, zb = z[:batch_size], z[batch_size:]
            logits = parts["head"](torch.cat([(za - zb).abs(), za * zb], 1)).squeeze(1)
            loss = bce(logits, torch.from_numpy(same))
        elif kind == "vae":
            x = prep(sampler.batch(batch_size))
            out = net(x)
            mu, logvar = out[:, :code_size], out[:, code_size:].clamp(-10, 10)
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
            recon = nn.functional.mse_loss(parts["decoder"](z), _small(x))
            kl = -0.5 * torch.mean(torch.sum(1 + logvar - mu ** 2 - logvar.exp(), 1))
            loss = recon + beta * kl
        else:
            x = prep(sampler.batch(batch_size))
            z_fake = torch.randn(batch_size, code_size)
            x_fake = parts["generator"](z_fake)
            z_real = net(x)
            disc = parts["discriminator"]
            ones, zeros = torch.ones(batch_size), torch.zeros(batch_size)
            d_loss = (bce(disc(_small(x), z_real.detach()), ones)
                      + bce(disc(x_fake.detach(), z_fake), zeros))
            opt_d.zero_grad()
            d_loss.backward()
            opt_d.step()
            g_loss = (bce(disc(_small(x), z_real), zeros) + bce(disc(x_fake, z_fake), ones))
            loss = g_loss
            losses.append(d_loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
        if kind != "bigan":
            losses.append(loss.item())
        yield step + 1, steps
    net.eval()
    spec["training"] = {"kind": kind, "steps": steps, "batch_size": batch_size, "seed": seed,
                        "lr": lr, "data": f"synthetic fields ({sampler.side} px x "
                        f"{len(sampler.fields)}, napari_xhisto.synth)",
                        "first_loss": round(float(np.mean(losses[:10])), 5),
                        "last_loss": round(float(np.mean(losses[-10:])), 5),
                        "seconds": round(time.perf_counter() - t0, 1),
                        **({"beta": beta} if kind == "vae" else {})}
    return spec, net, losses
