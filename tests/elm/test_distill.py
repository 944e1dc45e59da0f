from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.svm import SVC

from augury.elm import ELMConfig
from augury.elm.distill import SklearnTeacher, array_bytes, compare, distill
from tests.elm.conftest import Split


def test_student_learns_the_teachers_decisions_and_confidence(digits: Split) -> None:
    X, Xt, y, _ = digits
    teacher = SklearnTeacher(LogisticRegression(max_iter=3000).fit(X / 16, y))
    student = distill(teacher, X / 16, ELMConfig(n_hidden=512, alpha=0.1))
    P_t, P_s = teacher.predict_proba(Xt / 16), student.predict_proba(Xt / 16)
    assert np.mean(P_t.argmax(axis=1) == P_s.argmax(axis=1)) > 0.93
    assert np.abs(P_t - P_s).mean() < 0.05  # matches probabilities, not just labels
    np.testing.assert_array_equal(student.classes_, teacher.classes_)


def test_report_compares_accuracy_size_and_latency(digits: Split) -> None:
    X, Xt, y, yt = digits
    teacher = SklearnTeacher(RandomForestClassifier(50, random_state=0).fit(X, y))
    student = distill(teacher, X, ELMConfig(n_hidden=256), augment=1)
    report = compare(teacher, student, Xt, yt)
    assert report.teacher.accuracy == pytest.approx(np.mean(teacher.predict(Xt) == yt))
    assert report.student.accuracy > 0.9 and report.agreement > 0.9
    assert report.student.size_bytes == student.n_parameters * 4
    assert report.teacher.size_bytes > 0
    assert report.student.p50_us < report.teacher.p50_us  # an ELM row is far cheaper than 50 trees


def test_array_bytes_counts_fitted_arrays(cancer: Split) -> None:
    X, _, y, _ = cancer
    lr = LogisticRegression(max_iter=5000).fit(X, y)
    expected = lr.coef_.nbytes + lr.intercept_.nbytes + lr.classes_.nbytes + lr.n_iter_.nbytes
    assert array_bytes(lr) == expected


def test_teacher_without_probabilities_is_refused(cancer: Split) -> None:
    X, _, y, _ = cancer
    with pytest.raises(ValueError, match="probability=True"):
        SklearnTeacher(SVC().fit(X[:100], y[:100]))
