import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score
from sklearn.metrics import log_loss as sk_log_loss

from comp.metrics import METRICS

f1_weighted, f1_macro, accuracy, log_loss = (
    METRICS[name] for name in ("f1_weighted", "f1_macro", "accuracy", "log_loss")
)


@pytest.mark.parametrize("seed", range(5))
def test_metrics_equal_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    n_classes = 30
    # classes 25..29 never occur in truth; some are predicted (zero support, weight 0)
    y = rng.integers(0, 25, size=500)
    proba = rng.dirichlet(np.ones(n_classes), size=500)
    proba[np.arange(250), y[:250]] += 1.0  # half the rows right, so F1 is not trivial
    proba /= proba.sum(axis=1, keepdims=True)
    pred = proba.argmax(axis=1)
    assert f1_weighted(y, proba) == pytest.approx(f1_score(y, pred, average="weighted"), abs=1e-12)
    assert f1_macro(y, proba) == pytest.approx(f1_score(y, pred, average="macro"), abs=1e-12)
    assert accuracy(y, proba) == pytest.approx(accuracy_score(y, pred))
    expected = sk_log_loss(y, proba, labels=np.arange(n_classes))
    assert log_loss(y, proba) == pytest.approx(expected, rel=1e-6)


def test_weighted_f1_of_perfect_and_wrong_predictions():
    y = np.array([0, 0, 1, 2])
    assert f1_weighted(y, np.eye(3)[y]) == 1.0
    assert f1_weighted(y, np.eye(3)[(y + 1) % 3]) == 0.0
