"""The photo head's probability temperature and the SVM head on separable embeddings (no torch)."""

from __future__ import annotations

import numpy as np

from bunga.models.image import fit_head, fit_temperature, softmax


def test_temperature_recovers_the_scale_labels_were_drawn_with() -> None:
    rng = np.random.default_rng(0)
    margins = rng.normal(size=(4000, 4))
    for true_t in (0.5, 3.0):
        probs = softmax(true_t * margins)
        truth = np.array([rng.choice(4, p=p) for p in probs])
        assert abs(fit_temperature(margins, truth) / true_t - 1) < 0.1


def test_svm_head_separates_classes_and_orders_them_as_asked() -> None:
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(3, 64)) * 3
    y = np.repeat(np.array(["mawar", "melati", "anggrek"]), 30)
    x = centres[np.repeat(np.arange(3), 30)] + rng.normal(size=(90, 64))
    classes = ["anggrek", "mawar", "melati"]
    head = fit_head(x, y, classes, 1.0, 2.0)
    probs, sims = head.scores(x)
    assert np.allclose(probs.sum(axis=1), 1)
    assert (np.asarray(classes)[probs.argmax(axis=1)] == y).mean() == 1.0
    assert (np.asarray(classes)[sims.argmax(axis=1)] == y).mean() == 1.0
    sharper = fit_head(x, y, classes, 1.0, 8.0).scores(x)[0]
    assert (sharper.max(axis=1) >= probs.max(axis=1) - 1e-6).all()  # a higher temperature is more confident
