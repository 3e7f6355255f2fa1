"""Unit-length rows: no copy when a matrix already is normalised, and in place on a view."""

from __future__ import annotations

import numpy as np

from bunga.models.unit_rows import l2_normalise, normalise_in_place


def test_rows_become_unit_length_and_zero_rows_stay_zero() -> None:
    x = np.array([[3.0, 4.0], [0.0, 0.0], [-1.0, 0.0]], dtype=np.float32)
    z = l2_normalise(x)
    assert z.dtype == np.float32
    np.testing.assert_allclose(z, [[0.6, 0.8], [0.0, 0.0], [-1.0, 0.0]], atol=1e-7)
    assert x[0, 0] == 3.0  # the input is left alone


def test_an_already_normalised_matrix_is_returned_without_a_copy() -> None:
    z = l2_normalise(np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32))
    assert l2_normalise(z) is z


def test_in_place_on_the_embedding_columns_of_a_wider_matrix() -> None:
    matrix = np.random.default_rng(1).uniform(1, 2, size=(20, 6)).astype(np.float32)
    tail = matrix[:, 4:].copy()
    normalise_in_place(matrix[:, :4])
    np.testing.assert_allclose(np.linalg.norm(matrix[:, :4], axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(matrix[:, 4:], tail)
