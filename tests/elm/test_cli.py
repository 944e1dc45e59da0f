"""`augury elm ...` end to end, in-process, through the real entry point."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes

from augury.cli import main as cli
from augury.elm.io import load_model, read_spec


@pytest.fixture(autouse=True)
def _only_elm(monkeypatch: pytest.MonkeyPatch) -> None:
    # other command groups may not be importable in this checkout; the entry point is the same
    monkeypatch.setattr(cli, "COMMANDS", ("elm",))


@pytest.fixture(scope="module")
def cancer_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = load_breast_cancer()
    cols = {f"f{i}": data.data[:, i] for i in range(data.data.shape[1])}
    path = tmp_path_factory.mktemp("data") / "cancer.csv"
    pacsv.write_csv(pa.table({**cols, "diagnosis": data.target}), path)
    return path


@pytest.fixture(scope="module")
def diabetes_parquet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = load_diabetes()
    cols = {name: data.data[:, i] for i, name in enumerate(data.feature_names)}
    path = tmp_path_factory.mktemp("data") / "diabetes.parquet"
    pq.write_table(pa.table({**cols, "progression": data.target}), path)
    return path


def _run(*argv: str) -> int:
    return cli.main(["elm", *argv])


def test_train_with_cv_then_evaluate(
    cancer_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "models" / "cancer"
    args = ["train", str(cancer_csv), "--target", "diagnosis", "--task", "classification"]
    assert _run(*args, "--hidden", "128", "--cv", "5", "--out", str(out)) == 0
    printed = capsys.readouterr().out
    assert "5-fold CV chose hidden=" in printed and f"saved {out / '1'}" in printed
    spec = read_spec(out)
    assert spec["runtime"] == "elm" and spec["inputs"][0]["features"][:2] == ["f0", "f1"]
    assert _run("evaluate", str(out), str(cancer_csv)) == 0
    accuracy = float(capsys.readouterr().out.split("accuracy")[1].split()[0])
    assert accuracy > 0.95
    assert load_model(out).target_ == "diagnosis"


def test_regression_with_leave_one_out(
    diabetes_parquet: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "diab"
    args = ["train", str(diabetes_parquet), "--target", "progression", "--task", "regression"]
    assert _run(*args, "--hidden", "64", "--cv", "loo", "--out", str(out)) == 0
    assert "leave-one-out CV chose" in capsys.readouterr().out
    assert _run("evaluate", str(out / "1"), str(diabetes_parquet)) == 0
    assert "r2" in capsys.readouterr().out


def test_distill_and_prune(
    cancer_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    student = tmp_path / "student"
    args = ["distill", str(cancer_csv), "--target", "diagnosis", "--teacher", "logistic"]
    assert _run(*args, "--hidden", "64", "--out", str(student)) == 0
    printed = capsys.readouterr().out
    assert "teacher (Pipeline)" in printed and "agreement with the teacher" in printed
    small = tmp_path / "small"
    args = ["prune", str(student), str(cancer_csv), "--fractions", "1,0.5,0.25"]
    assert _run(*args, "--keep", "0.25", "--out", str(small)) == 0
    printed = capsys.readouterr().out
    assert "64 " in printed and "16 " in printed and "saved" in printed
    assert load_model(small).hidden_.n_hidden == 16  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("table", "extra", "message"),
    [
        ({"a": [1.0, 2.0], "y": [0, 1]}, ["--target", "nope"], "target column 'nope' not found"),
        ({"a": ["u", "v"], "y": [0, 1]}, ["--target", "y"], "non-numeric feature columns ['a']"),
        ({"a": [1.0, None], "y": [0, 1]}, ["--target", "y"], "missing values"),
        ({"a": [1.0, 2.0], "y": [1, 1]}, ["--target", "y"], "single class"),
    ],
)
def test_bad_data_exits_2_with_a_clear_message(
    table: dict[str, list[object]],
    extra: list[str],
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "bad.csv"
    pacsv.write_csv(pa.table(table), path)
    assert _run("train", str(path), *extra, "--out", str(tmp_path / "m")) == 2
    err = capsys.readouterr().err
    assert err.startswith("augury: error: ") and message in err
    assert not (tmp_path / "m").exists()


def test_bad_cv_value_is_an_argparse_error(cancer_csv: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        _run("train", str(cancer_csv), "--target", "diagnosis", "--cv", "1", "--out", str(tmp_path))
    assert exc.value.code == 2
