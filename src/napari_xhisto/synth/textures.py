"""Periodic noise textures, looked up by global pixel coordinates.

Every texture is periodic (filtered in the Fourier domain), so the value at level-0 pixel
(row, col) is ``tex[row % T, col % T]`` no matter which tile asks: tiles join seamlessly and
point look-ups (cell placement) agree with window look-ups (rendering).
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft
from scipy.ndimage import map_coordinates

PERIOD = 1024          # texture period in pixels
MAX_WINDOW = 1024 + 80  # largest window a renderer asks for (block, margins, alignment)


def periodic_noise(rng: np.random.Generator, size: int, sigma_along: float,
                   sigma_across: float | None = None, angle: float = 0.0) -> np.ndarray:
    """Zero-mean, unit-variance Gaussian-filtered noise with period ``size`` (float32).

    ``sigma_along`` / ``sigma_across`` are the filter's standard deviations in pixels along and
    across the direction ``angle`` (radians, from the row axis); equal sigmas give isotropic noise.
    """
    if sigma_across is None:
        sigma_across = sigma_along
    fr = np.fft.fftfreq(size).astype(np.float32)[:, None]
    fc = np.fft.rfftfreq(size).astype(np.float32)[None, :]
    along = fr * np.cos(angle) + fc * np.sin(angle)
    across = -fr * np.sin(angle) + fc * np.cos(angle)
    gain = np.exp(-2 * np.pi**2 * ((sigma_along * along) ** 2 + (sigma_across * across) ** 2))
    spec = sfft.rfft2(rng.standard_normal((size, size), dtype=np.float32)) * gain
    out = sfft.irfft2(spec, s=(size, size))
    out -= out.mean()
    out /= out.std() + 1e-12
    return out.astype(np.float32)


class TextureBank:
    """Named periodic textures with window and point look-ups.

    Parameters
    ----------
    seed : int
    mpp : float
        Micrometres per pixel; texture scales are defined in µm.
    """

    N_FIBRE_ORIENTATIONS = 4

    def __init__(self, seed: int, mpp: float):
        rng = np.random.default_rng([int(seed), 7001])
        um = 1.0 / mpp
        t = {}
        t["edge"] = periodic_noise(rng, PERIOD, 4.0 * um)        # ragged borders
        t["edge2"] = periodic_noise(rng, PERIOD, 10.0 * um)      # tissue outline
        t["granular"] = periodic_noise(rng, PERIOD, max(0.7, 0.9 * um))  # cytoplasm granules
        t["smudge"] = periodic_noise(rng, PERIOD, 5.0 * um)      # necrosis blotches
        t["uneven"] = periodic_noise(rng, PERIOD, 60.0 * um)     # staining unevenness
        t["grain"] = periodic_noise(rng, PERIOD, 0.6)            # sensor noise
        t["loose"] = periodic_noise(rng, PERIOD, 18.0 * um)      # loose vs dense stroma
        for k in range(self.N_FIBRE_ORIENTATIONS):
            ang = np.pi * k / self.N_FIBRE_ORIENTATIONS
            a = periodic_noise(rng, PERIOD, 9.0 * um, max(0.8, 1.0 * um), ang)
            b = periodic_noise(rng, PERIOD, 22.0 * um, 3.5 * um, ang)
            fib = 0.7 * a + 0.6 * b
            # wavy collagen: warp the straight fibres by a smooth periodic displacement
            dr = periodic_noise(rng, PERIOD, 10.0 * um) * (3.5 * um)
            dc = periodic_noise(rng, PERIOD, 10.0 * um) * (3.5 * um)
            rr, cc = np.mgrid[0:PERIOD, 0:PERIOD].astype(np.float32)
            fib = map_coordinates(fib, [rr + dr, cc + dc], order=1, mode="grid-wrap")
            t[f"fibre{k}"] = (fib / fib.std()).astype(np.float32)
        self._max_abs = {k: float(np.abs(v).max()) for k, v in t.items()}
        # Store each texture padded by wrap, so any window is a plain slice (no copy).
        self._padded = {}
        for k in list(t):
            self._padded[k] = np.pad(t.pop(k), ((0, MAX_WINDOW), (0, MAX_WINDOW)), mode="wrap")

    def window(self, name: str, r0: int, c0: int, h: int, w: int) -> np.ndarray:
        """Texture values on level-0 pixels ``[r0, r0+h) x [c0, c0+w)`` (a view; do not modify)."""
        if h > MAX_WINDOW or w > MAX_WINDOW:
            raise ValueError(f"texture windows are at most {MAX_WINDOW} px, asked {h} x {w}")
        a, b = r0 % PERIOD, c0 % PERIOD
        return self._padded[name][a:a + h, b:b + w]

    def max_abs(self, name: str) -> float:
        """Largest absolute value of a texture (bounds for skipping uniform windows)."""
        return self._max_abs[name]

    def at(self, name: str, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Texture values at integer pixel positions (floor of the given coordinates)."""
        r = np.floor(rows).astype(np.int64) % PERIOD
        c = np.floor(cols).astype(np.int64) % PERIOD
        return self._padded[name][r, c]
