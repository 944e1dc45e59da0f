"""`augury elm`: train, evaluate, distill and prune extreme learning machines on tables.

    augury elm train DATA.csv|parquet --target COL --task classification --hidden 512 \
        [--cv 5|loo] --out models/NAME
    augury elm evaluate models/NAME DATA.csv
    augury elm distill DATA.csv --target COL --teacher random_forest [--out models/NAME]
    augury elm prune models/NAME DATA.csv [--keep 0.25 --out models/NAME_small]

(The issue's `augury distill` is `augury elm distill`.)
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from augury.elm.activations import ACTIVATIONS
from augury.elm.base import ELMConfig
from augury.elm.distill import SklearnTeacher, compare, distill
from augury.elm.evaluation import classification_metrics, regression_metrics
from augury.elm.heads import ClassifierHead, RegressorHead
from augury.elm.io import load_model, save_model
from augury.elm.model import ELMClassifier, ELMRegressor
from augury.elm.prune import DEFAULT_FRACTIONS, prune, pruning_curve
from augury.elm.selection import select_hyperparameters
from augury.elm.tabular import Dataset, read_table, to_dataset

TEACHERS: dict[str, Callable[[int], Any]] = {
    "random_forest": lambda seed: RandomForestClassifier(n_estimators=200, random_state=seed),
    "gradient_boosting": lambda seed: HistGradientBoostingClassifier(random_state=seed),
    "mlp": lambda seed: make_pipeline(
        StandardScaler(), MLPClassifier(hidden_layer_sizes=(256,), max_iter=300, random_state=seed)
    ),
    "logistic": lambda seed: make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
}


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("elm", help="extreme learning machines on tabular data")
    sub = parser.add_subparsers(dest="elm_command", required=True, metavar="SUBCOMMAND")

    train = sub.add_parser("train", help="train an ELM and save it as models/NAME/<version>")
    _data_args(train, target_required=True)
    train.add_argument("--task", choices=("classification", "regression"), default="classification")
    _model_args(train)
    train.add_argument(
        "--cv",
        type=_cv,
        default=None,
        help="folds (e.g. 5) or 'loo' to choose "
        "--hidden (up to the given size) and --alpha by cross-validation",
    )
    train.add_argument("--out", required=True, help="model folder, e.g. models/NAME")
    train.set_defaults(func=run_train)

    evaluate = sub.add_parser("evaluate", help="score a saved model on a table")
    evaluate.add_argument("model", help="models/NAME (latest version) or models/NAME/VERSION")
    evaluate.add_argument("data", help="CSV or Parquet file with the model's feature columns")
    evaluate.add_argument("--target", help="target column (default: the one used in training)")
    evaluate.set_defaults(func=run_evaluate)

    dist = sub.add_parser("distill", help="train an ELM student on a teacher's probabilities")
    _data_args(dist, target_required=True)
    dist.add_argument("--teacher", choices=tuple(TEACHERS), default="random_forest")
    _model_args(dist)
    dist.add_argument("--augment", type=int, default=0, help="jittered copies of each row")
    dist.add_argument("--test-size", type=float, default=0.25)
    dist.add_argument("--out", help="save the student here (models/NAME)")
    dist.set_defaults(func=run_distill)

    pr = sub.add_parser("prune", help="accuracy-vs-size curve; optionally save a pruned model")
    pr.add_argument("model", help="models/NAME or models/NAME/VERSION")
    pr.add_argument("data", help="CSV or Parquet with the model's features and target")
    pr.add_argument("--target", help="target column (default: the one used in training)")
    pr.add_argument("--fractions", type=_fractions, default=DEFAULT_FRACTIONS)
    pr.add_argument("--keep", type=float, help="fraction of units to keep in the saved model")
    pr.add_argument("--test-size", type=float, default=0.25)
    pr.add_argument("--out", help="save the model pruned to --keep here")
    pr.add_argument("--seed", type=int, default=0)
    pr.set_defaults(func=run_prune)


def _data_args(p: argparse.ArgumentParser, target_required: bool) -> None:
    p.add_argument("data", help="CSV or Parquet file")
    p.add_argument("--target", required=target_required, help="target column")
    p.add_argument("--drop", action="append", default=[], help="column to ignore (repeatable)")


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hidden", type=int, default=512, help="hidden units")
    p.add_argument("--activation", choices=tuple(ACTIVATIONS), default="tanh")
    p.add_argument("--alpha", type=float, default=1.0, help="ridge penalty")
    p.add_argument("--seed", type=int, default=0)


def _cv(value: str) -> int | str:
    if value == "loo":
        return value
    try:
        folds = int(value)
    except ValueError:
        folds = 0
    if folds < 2:
        raise argparse.ArgumentTypeError(f"--cv takes a number of folds >= 2 or 'loo', not {value}")
    return folds


def _fractions(value: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in value.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--fractions takes e.g. 1,0.5,0.25, not {value}"
        ) from None


def _config(args: argparse.Namespace) -> ELMConfig:
    return ELMConfig(
        n_hidden=args.hidden, activation=args.activation, alpha=args.alpha, seed=args.seed
    )


def _print_metrics(title: str, metrics: dict[str, float]) -> None:
    print(title)
    for name, value in metrics.items():
        print(f"  {name:<10} {value:.4f}")


def _print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(h) for h in headers], *[[_cell(v) for v in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def _cell(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _metrics(model: ClassifierHead | RegressorHead, data: Dataset) -> dict[str, float]:
    assert data.y is not None
    if isinstance(model, ClassifierHead):
        return classification_metrics(data.y, model.predict_proba(data.X), model.classes_)
    return regression_metrics(data.y, model.predict(data.X))


def run_train(args: argparse.Namespace) -> int:
    data = to_dataset(read_table(args.data), args.target, args.task, drop=tuple(args.drop))
    config = _config(args)
    metrics: dict[str, float] = {}
    if args.cv is not None:
        grid = tuple(
            sorted(
                {
                    max(8, args.hidden // 8),
                    max(8, args.hidden // 4),
                    max(8, args.hidden // 2),
                    args.hidden,
                }
            )
        )
        found = select_hyperparameters(data.X, data.y, args.task, config, grid, cv=args.cv)
        config = found.apply(config)
        score = "accuracy" if args.task == "classification" else "-mse (standardized)"
        print(
            f"{found.method} CV chose hidden={found.n_hidden} alpha={found.alpha:g} "
            f"({score} {found.score:.4f})"
        )
        metrics["cv_score"] = found.score
    model = ELMClassifier(config) if args.task == "classification" else ELMRegressor(config)
    model.fit(data.X, data.y)
    model.feature_names_, model.target_ = data.feature_names, args.target
    train_metrics = _metrics(model, data)
    _print_metrics(f"training rows: {data.X.shape[0]}, features: {data.X.shape[1]}", train_metrics)
    metrics.update({f"train_{k}": v for k, v in train_metrics.items()})
    folder = save_model(model, args.out, metrics=metrics)
    print(f"saved {folder}")
    return 0


def _load_data(args: argparse.Namespace) -> tuple[ClassifierHead | RegressorHead, Dataset]:
    model = load_model(args.model)
    target = args.target or model.target_
    if target is None or (isinstance(target, list) and len(target) != 1):
        raise ValueError("the model does not record a single target column; pass --target")
    column = target if isinstance(target, str) else target[0]
    data = to_dataset(read_table(args.data), column, model.task, features=model.feature_names_)
    return model, data


def run_evaluate(args: argparse.Namespace) -> int:
    model, data = _load_data(args)
    _print_metrics(f"{args.model} on {data.X.shape[0]} rows", _metrics(model, data))
    return 0


def _split(data: Dataset, test_size: float, seed: int, stratify: bool) -> tuple[Any, ...]:
    if not 0 < test_size < 1:
        raise ValueError(f"--test-size must be between 0 and 1, got {test_size}")
    labels = (
        data.y
        if stratify and np.unique(np.asarray(data.y), return_counts=True)[1].min() > 1
        else None
    )
    return tuple(
        train_test_split(data.X, data.y, test_size=test_size, random_state=seed, stratify=labels)
    )


def run_distill(args: argparse.Namespace) -> int:
    data = to_dataset(read_table(args.data), args.target, "classification", drop=tuple(args.drop))
    X_tr, X_te, y_tr, y_te = _split(data, args.test_size, args.seed, stratify=True)
    teacher = SklearnTeacher(TEACHERS[args.teacher](args.seed).fit(X_tr, y_tr))
    student = distill(teacher, X_tr, _config(args), augment=args.augment, seed=args.seed)
    report = compare(teacher, student, X_te, y_te)
    rows = [
        (m.name, m.accuracy, m.size_bytes, m.p50_us, m.batch_us_per_row)
        for m in (report.teacher, report.student)
    ]
    _print_table(("model", "accuracy", "bytes", "p50 us/row", "batch us/row"), rows)
    print(f"agreement with the teacher: {report.agreement:.4f} on {len(y_te)} test rows")
    if args.out:
        student.feature_names_, student.target_ = data.feature_names, args.target
        metrics = {"test_accuracy": report.student.accuracy, "agreement": report.agreement}
        print(f"saved {save_model(student, args.out, metrics=metrics)}")
    return 0


def run_prune(args: argparse.Namespace) -> int:
    model, data = _load_data(args)
    stratify = isinstance(model, ClassifierHead)
    X_tr, X_te, y_tr, y_te = _split(data, args.test_size, args.seed, stratify)
    points = pruning_curve(model, X_tr, y_tr, X_te, y_te, args.fractions)
    score = "test accuracy" if stratify else "test R^2"
    _print_table(
        ("hidden units", score, "bytes"), [(p.n_hidden, p.score, p.size_bytes) for p in points]
    )
    if args.keep is not None or args.out:
        if args.keep is None or not args.out or not 0 < args.keep <= 1:
            raise ValueError("saving a pruned model needs both --keep (0 < F <= 1) and --out")
        width = max(1, round(model._hidden().n_hidden * args.keep))
        pruned = prune(model, data.X, data.y, width)
        print(f"saved {save_model(pruned, args.out)} ({width} units, refit on all rows)")
    return 0
