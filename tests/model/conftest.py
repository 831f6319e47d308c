import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler


@pytest.fixture(scope="session")
def digits_split():
    """Stratified 60/20/20 split of digits, standardised on train, float32."""
    X, y = load_digits(return_X_y=True)
    X_tmp, X_te, y_tmp, y_te = train_test_split(X, y, test_size=0.2, stratify=y, random_state=0)
    X_tr, X_va, y_tr, y_va = train_test_split(X_tmp, y_tmp, test_size=0.25, stratify=y_tmp,
                                              random_state=0)
    scaler = StandardScaler().fit(X_tr)
    f = lambda a: scaler.transform(a).astype(np.float32)  # noqa: E731
    return f(X_tr), y_tr, f(X_va), y_va, f(X_te), y_te
