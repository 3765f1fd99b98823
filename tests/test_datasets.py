"""The digits split (``ce_tutorial._datasets``)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from ce_tutorial import load_digits_split


def test_the_split_is_the_one_the_chapters_wrote_out():
    # The code the training chapter teaches, step by step.
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.2, random_state=0, stratify=y
    )
    mean = X_train.mean(axis=0)
    std = X_train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    expected = ((X_train - mean) / std, (X_test - mean) / std, y_train, y_test)
    for got, want in zip(load_digits_split(), expected, strict=True):
        np.testing.assert_array_equal(got, want)


def test_shapes_dtypes_and_stratification():
    X_train, X_test, y_train, y_test = load_digits_split()
    assert X_train.shape == (1437, 64) and X_test.shape == (360, 64)
    assert X_train.dtype == X_test.dtype == np.float64
    assert y_train.dtype == y_test.dtype == np.int64
    # Stratified: each class's share differs by less than one example per part.
    share_train = np.bincount(y_train, minlength=10) / len(y_train)
    share_test = np.bincount(y_test, minlength=10) / len(y_test)
    assert np.all(np.abs(share_train - share_test) < 1 / len(y_test))


def test_standardised_with_training_statistics_only():
    X_train, X_test, _, _ = load_digits_split()
    raw_train, raw_test, _, _ = load_digits_split(standardize=False)
    std = raw_train.std(axis=0)
    scaled = std > 0
    np.testing.assert_allclose(X_train.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(X_train.std(axis=0)[scaled], 1.0, rtol=1e-12)
    # Constant training pixels are centred, not divided by zero.
    assert np.all(X_train[:, ~scaled] == 0.0)
    assert (~scaled).sum() >= 1
    # The test set is mapped with the training set's statistics.
    mean = raw_train.mean(axis=0)
    np.testing.assert_allclose(
        X_test[:, scaled], (raw_test - mean)[:, scaled] / std[scaled], rtol=1e-12
    )
    assert not np.allclose(X_test.mean(axis=0)[scaled], 0.0, atol=1e-3)


def test_deterministic_and_seed_dependent():
    a = load_digits_split(random_state=3)
    b = load_digits_split(random_state=3)
    c = load_digits_split(random_state=4)
    for x, z in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, z)
    assert not np.array_equal(a[2], c[2])


def test_test_size_sets_the_held_out_fraction():
    _, X_test, _, _ = load_digits_split(test_size=0.5)
    assert len(X_test) == 899  # ceil(0.5 * 1797), as scikit-learn rounds


@pytest.mark.parametrize("test_size", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_test_size_out_of_range(test_size):
    with pytest.raises(ValueError, match=r"test_size must be in \(0, 1\)"):
        load_digits_split(test_size=test_size)


def test_test_size_too_small_for_the_classes():
    with pytest.raises(ValueError, match=r"fewer than the 10 classes"):
        load_digits_split(test_size=0.001)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"test_size": "0.2"}, r"test_size must be a real number, got str"),
        ({"test_size": True}, r"test_size must be a real number, got bool"),
        ({"random_state": 1.5}, r"random_state must be an integer, got float"),
        ({"random_state": None}, r"random_state must be an integer, got NoneType"),
        ({"standardize": 1}, r"standardize must be a bool, got int"),
    ],
)
def test_bad_argument_types(kwargs, match):
    with pytest.raises(TypeError, match=match):
        load_digits_split(**kwargs)
