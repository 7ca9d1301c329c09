"""``check``: leakage (exact and near duplicates), train/test shift (adversarial validation)
and label problems, from what a workspace already holds.

Modules: :mod:`.checker` (:func:`check`, :class:`CheckResult`), :mod:`.near` (top-1 cosine
search in blocks), :mod:`.shift` (adversarial validation), :mod:`.labels`, :mod:`.summary`
(rows for the table and the HTML report).
"""

from __future__ import annotations

from .checker import CheckResult, check
from .near import nearest
from .shift import adversarial
from .summary import check_section, summary_rows

__all__ = ["CheckResult", "adversarial", "check", "check_section", "nearest", "summary_rows"]
