"""The book's data: scikit-learn's handwritten digits, split and standardised.

Several chapters train on the same split of the same data. They load it with
:func:`load_digits_split`, so that a reader who downloads a single notebook
gets exactly the split the book uses, and so that the split is written once.

scikit-learn is needed here and nowhere else in the package: it is imported
when the function is called, so that ``numpy`` stays the package's only
runtime dependency.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["load_digits_split"]


def load_digits_split(
    test_size: float = 0.2, random_state: int = 0, standardize: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    r"""The digits data set, split into training and test sets, standardised.

    Loads scikit-learn's 1,797 images of handwritten digits (8 x 8 pixels with
    values 0 to 16, flattened into 64 features; labels 0 to 9), holds out a
    stratified test set, and standardises every pixel with the mean and
    standard deviation of the *training* set only, so that the test set stays
    unseen by the preprocessing too.

    Parameters
    ----------
    test_size : float, default=0.2
        The fraction of the examples held out for testing, in (0, 1).
    random_state : int, default=0
        Fixes the shuffle of the split (``sklearn.model_selection.
        train_test_split``); the same value always gives the same split.
    standardize : bool, default=True
        Whether to standardise the pixels. Pixels that are constant in the
        training set (their standard deviation is 0) are centred but not
        scaled, instead of divided by zero.

    Returns
    -------
    X_train : ndarray of shape (n_train, 64), float64
    X_test : ndarray of shape (n_test, 64), float64
    y_train : ndarray of shape (n_train,), int64
    y_test : ndarray of shape (n_test,), int64
        The split in the order of ``train_test_split``. With ``stratify`` the
        class proportions are the same in both parts, up to rounding.

    Raises
    ------
    ImportError
        If scikit-learn is not installed (the book's ``requirements.txt``
        installs it).
    TypeError
        If ``test_size`` is not a real number, ``random_state`` not an
        integer, or ``standardize`` not a bool.
    ValueError
        If ``test_size`` is not strictly between 0 and 1, or leaves fewer
        examples in a part than there are classes.

    Notes
    -----
    With :math:`\mu_r` and :math:`\sigma_r` the mean and standard deviation of
    feature :math:`r` over the training set, every example becomes

    .. math:: x_r \leftarrow \frac{x_r - \mu_r}{\sigma_r}
              \quad (\sigma_r > 0), \qquad
              x_r \leftarrow x_r - \mu_r \quad (\sigma_r = 0).

    References
    ----------
    .. [1] E. Alpaydin and C. Kaynak, "Optical Recognition of Handwritten
       Digits", UCI Machine Learning Repository, 1998.

    Examples
    --------
    >>> from ce_tutorial import load_digits_split
    >>> X_train, X_test, y_train, y_test = load_digits_split()
    >>> X_train.shape, X_test.shape
    ((1437, 64), (360, 64))
    >>> bool(abs(X_train.mean()) < 1e-12)
    True
    """
    if isinstance(test_size, bool) or not isinstance(test_size, numbers.Real):
        raise TypeError(
            f"test_size must be a real number, got {type(test_size).__name__}"
        )
    if not 0.0 < float(test_size) < 1.0:
        raise ValueError(f"test_size must be in (0, 1), got {test_size!r}")
    if isinstance(random_state, bool) or not isinstance(random_state, numbers.Integral):
        raise TypeError(
            f"random_state must be an integer, got {type(random_state).__name__}"
        )
    if not isinstance(standardize, bool | np.bool_):
        raise TypeError(f"standardize must be a bool, got {type(standardize).__name__}")
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as exc:  # pragma: no cover - the book always has it
        raise ImportError(
            "load_digits_split needs scikit-learn: python -m pip install scikit-learn"
        ) from exc

    X, y = load_digits(return_X_y=True)
    n_classes = np.unique(y).size
    n_test = int(np.ceil(float(test_size) * len(y)))
    if min(n_test, len(y) - n_test) < n_classes:
        raise ValueError(
            f"test_size={test_size!r} leaves {min(n_test, len(y) - n_test)} examples "
            f"in one part, fewer than the {n_classes} classes a stratified split needs"
        )
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=float(test_size), random_state=int(random_state), stratify=y
    )
    X_train = X_train.astype(np.float64)
    X_test = X_test.astype(np.float64)
    if standardize:
        mean = X_train.mean(axis=0)
        std = X_train.std(axis=0)
        std = np.where(std > 0, std, 1.0)
        X_train = (X_train - mean) / std
        X_test = (X_test - mean) / std
    return X_train, X_test, y_train.astype(np.int64), y_test.astype(np.int64)
