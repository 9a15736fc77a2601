"""How necrosis looks: the "classic" style (the default) and "comedo" necrosis.

``"classic"``: smooth hypereosinophilic blotches with dispersed karyorrhectic debris and a few
pyknotic nuclei. It is what the bundled demo model was trained on, so it stays the default.

``"comedo"``: closer to the necrosis of real tumours (comedo necrosis, melanoma and carcinoma
necrosis): necrosis is dead tumour, and it keeps traces of it. Ghosts of the dead tumour cells
sit on the tumour cells' spacing (nuclear shadows of a tumour nucleus' size and outline, pale
by karyolysis, in a hypereosinophilic cell outline), most of them near the viable rim and fewer
deeper in, where they have dissolved; half of the ghosts hold the dark fragments of their own
nucleus (karyorrhexis), so most debris is clustered in dead cells rather than spread evenly; the
background is the cells' granular cytoplasm, hypereosinophilic, with basophilic nuclear dust
("dirty" necrosis). Because it shares features with tumour, a model that never saw necrosis
calls it tumour (seed 000's sampling bias); the demo model, trained on "classic" necrosis only,
does the same (it gives comedo necrosis p(tumour) about 0.86).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NecrosisStyle:
    """Drawing parameters of necrosis.

    Attributes
    ----------
    name : str
    e, e_smudge, e_gran : float
        Eosin optical density of the background: base, times the blotch texture ("smudge"),
        times the granule texture ("granular", also the tumour cytoplasm's).
    h, h_smudge, h_gran : float
        The same for haematoxylin (nuclear dust).
    debris_p : float
        Chance of a dispersed karyorrhectic debris cluster per 7 µm site.
    ghost_p0, ghost_p1 : float
        Chance of a ghost cell per 15 µm tumour-cell site: ``ghost_p0 + ghost_p1 *
        exp(-depth / ghost_depth_um)`` with ``depth`` the distance inside the necrosis.
    ghost_depth_um : float
    """

    name: str
    e: float = 0.72
    e_smudge: float = 0.10
    e_gran: float = 0.0
    h: float = 0.09
    h_smudge: float = 0.04
    h_gran: float = 0.0
    debris_p: float = 0.4
    ghost_p0: float = 0.0
    ghost_p1: float = 0.0
    ghost_depth_um: float = 40.0

    @property
    def has_ghosts(self) -> bool:
        return self.ghost_p0 > 0 or self.ghost_p1 > 0


NECROSIS_STYLES = {
    "classic": NecrosisStyle("classic"),
    "comedo": NecrosisStyle("comedo", e=0.62, e_gran=0.03, h=0.12, h_gran=0.03, debris_p=0.15,
                            ghost_p0=0.3, ghost_p1=0.55),
}


def necrosis_style(style) -> NecrosisStyle:
    """A ``NecrosisStyle`` from its name (``"classic"``, ``"comedo"``) or itself."""
    if isinstance(style, NecrosisStyle):
        return style
    try:
        return NECROSIS_STYLES[str(style)]
    except KeyError:
        raise ValueError(f"necrosis must be one of {sorted(NECROSIS_STYLES)}, "
                         f"got {style!r}") from None
