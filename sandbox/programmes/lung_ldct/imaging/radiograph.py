"""How visible a nodule is on a chest radiograph (one posteroanterior projection).

A projection sums attenuation along the beam, so a nodule of diameter ``d`` adds contrast in
proportion to its thickness (``d``) and its density relative to lung: solid 1, part-solid 0.5,
ground glass 0.15 (a hazy nodule that CT shows is nearly transparent to a radiograph). What hides
it is anatomical background (vessels, overlapping structures), not quantum noise (Samei et al.,
Radiology 1999, "anatomic noise"). A Rose-like product of contrast (∝ d) and the square root of
the nodule's area (∝ d) makes conspicuity grow as ``d^2``:

    conspicuity = C_REF * density * (d / reference_mm)^2 * (obscured_factor if behind anatomy)

* ``C_REF`` = 14, the reference thoracic radiologist's ``detection_c50`` (agents/readers): an
  unobscured solid nodule of ``reference_mm`` is found half the time. Literature default 15 mm:
  solitary nodules on radiographs are found about half the time near 1.5 cm and rarely below 1 cm
  (Quekel et al., Chest 1999: missed lung cancers on radiographs had a median diameter of 16 mm;
  Kundel et al., Invest Radiol 1989).
* About a third of the lung field lies behind ribs, clavicles, heart, hila, mediastinum or
  diaphragm (``obscured_share`` 0.35), and there a nodule keeps ``obscured_factor`` 0.4 of its
  conspicuity: most cancers missed on radiographs lie behind such structures (Austin et al.,
  Radiology 1992; Shah et al., Radiology 2003). Whether a finding is behind them is a keyed draw
  per person and finding (stream ``imaging.cxr_overlap``): the same nodule stays where it is.

The parameters are the scenario's ``programme.radiograph`` (:class:`..config.Radiograph`).
"""

from __future__ import annotations

from sandbox.programmes.lung_ldct.config import Radiograph

C_REF = 14.0


def conspicuity_cxr(
    diameter_mm: float, nodule_type: int, overlap_u: float, rg: Radiograph | None = None
) -> float:
    """Conspicuity of a nodule on a chest radiograph (``overlap_u``: its keyed location draw)."""
    rg = rg or Radiograph()
    if diameter_mm <= 0.0:
        return 0.0
    c = C_REF * rg.density[nodule_type] * (diameter_mm / rg.reference_mm) ** 2
    return c * (rg.obscured_factor if overlap_u < rg.obscured_share else 1.0)
