"""Answer bands: the sure threshold fitted on known photos mixed with untaught ones, and the band rule."""

from __future__ import annotations

import numpy as np
import pytest

from bunga.catalog import Catalog, SpeciesInfo
from bunga.models.bands import NEVER, band, candidates, fit_sure
from bunga.serving.routes.predict import shared_family


def test_the_sure_threshold_keeps_precision_on_the_mix() -> None:
    rng = np.random.default_rng(0)
    known = rng.uniform(0.3, 1.0, 2000)
    right = rng.uniform(0, 1, 2000) < known  # the more probable, the more often right
    unknown = rng.uniform(0.2, 0.9, 1500)  # untaught species rarely reach the top probabilities
    fit = fit_sure(known, right, unknown)
    sure_known, sure_unknown = known >= fit.threshold, unknown >= fit.threshold
    weight = (37 / 45) * len(known) / len(unknown)
    precision = (sure_known & right).sum() / (sure_known.sum() + weight * sure_unknown.sum())
    assert precision >= 0.97 and fit.precision == pytest.approx(precision)
    assert fit.known_sure == pytest.approx(sure_known.mean()) and 0.05 < fit.known_sure < 0.5
    lower = fit.threshold - 0.02  # the lowest such threshold: a bit lower and the mix is not 97 % right
    below = known >= lower
    assert (below & right).sum() / (below.sum() + weight * (unknown >= lower).sum()) < 0.97


def test_untaught_species_as_confident_as_known_ones_leave_nothing_sure() -> None:
    rng = np.random.default_rng(1)
    known = rng.uniform(0.5, 1.0, 500)
    fit = fit_sure(known, np.ones(500, dtype=bool), rng.uniform(0.5, 1.0, 500))
    assert fit.threshold == NEVER and fit.known_sure == 0.0


def test_bands_of_answers() -> None:
    assert band(True, False, 0.95, 0.9) == "sure"
    assert band(True, False, 0.6, 0.9) == "possible"
    assert band(False, False, 0.95, 0.9) == "not_recognised"
    assert band(False, True, 0.95, 0.9) == "not_a_flower"
    assert band(True, False, 0.2, None) == "sure"  # a card without bands answers as before


def test_candidates_are_the_top_one_then_those_above_the_floor() -> None:
    assert candidates(np.array([0.5, 0.3, 0.02, 0.18])) == [0, 1, 3]
    assert candidates(np.array([0.97, 0.01, 0.02])) == [0]


def test_a_shared_family_is_named_only_when_every_candidate_has_it() -> None:
    catalog = Catalog(
        {
            "a": SpeciesInfo(id="a", nama="A", famili="Asteraceae"),
            "b": SpeciesInfo(id="b", nama="B", famili="Asteraceae"),
            "c": SpeciesInfo(id="c", nama="C", famili="Rosaceae"),
            "d": SpeciesInfo(id="d", nama="D", famili="-"),
        }
    )
    assert shared_family(catalog, ["a", "b"]) == "Asteraceae"
    assert shared_family(catalog, ["a", "c"]) is None
    assert shared_family(catalog, ["d"]) is None and shared_family(catalog, []) is None
