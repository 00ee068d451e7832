"""How visible a nodule is on a chest radiograph (one posteroanterior projection).

A projection sums attenuation along the beam, so a nodule of diameter ``d`` adds contrast in
proportion to its thickness (``d``) and its density relative to lung: solid 1, part-solid 0.5,
ground glass 0.15 (a hazy nodule that CT shows is nearly transparent to a radiograph). What hides
it is anatomical background (vessels, overlapping structures), not quantum noise (Samei et al.,
Radiology 1999, "anatomic noise"). A Rose-like product of contrast (∝ d) and the square root of
the nodule's area (∝ d) makes conspicuity grow as ``d^2``:

    conspicuity = C_REF * density * (d / D_REF)^2 * (OBSCURED_FACTOR if behind anatomy else 1)

* ``C_REF`` = 14 at ``D_REF`` = 15 mm: an unobscured solid nodule of 15 mm is found half the time
  by the reference thoracic radiologist (``detection_c50`` 14, agents/readers): solitary nodules
  on radiographs are found about half the time near 1.5 cm and rarely below 1 cm (Quekel et al.,
  Chest 1999: missed lung cancers on radiographs had a median diameter of 16 mm; Kundel et al.,
  Invest Radiol 1989).
* About a third of the lung field lies behind ribs, clavicles, heart, hila, mediastinum or
  diaphragm (``OBSCURED_SHARE`` 0.35), and there a nodule keeps ``OBSCURED_FACTOR`` 0.4 of its
  conspicuity: most cancers missed on radiographs lie behind such structures (Austin et al.,
  Radiology 1992; Shah et al., Radiology 2003). Whether a finding is behind them is a keyed draw
  per person and finding (stream ``imaging.cxr_overlap``): the same nodule stays where it is.
"""

from __future__ import annotations

DENSITY = (1.0, 0.5, 0.15)
C_REF = 14.0
D_REF = 15.0
OBSCURED_SHARE = 0.35
OBSCURED_FACTOR = 0.4


def conspicuity_cxr(diameter_mm: float, nodule_type: int, overlap_u: float) -> float:
    """Conspicuity of a nodule on a chest radiograph (``overlap_u``: its keyed location draw)."""
    if diameter_mm <= 0.0:
        return 0.0
    c = C_REF * DENSITY[nodule_type] * (diameter_mm / D_REF) ** 2
    return c * (OBSCURED_FACTOR if overlap_u < OBSCURED_SHARE else 1.0)
