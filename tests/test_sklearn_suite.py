"""scripts/sklearn_suite.py, the judge that runs scikit-learn's own test file on our classes:
its import substitution, its reading of docs/sklearn.md's list and of pytest's junit report.
(The two full runs take minutes; `make sklearn-suite` runs them, in CI after `make test`.)"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

pytest.importorskip("sklearn")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import sklearn_suite  # noqa: E402


def test_our_classes_replace_sklearns_in_the_installed_test_file():
    shipped = (
        sklearn_suite.sklearn_dir() / "linear_model" / "tests" / "test_logistic.py"
    ).read_text()
    ours = sklearn_suite.ours_source(shipped)
    imports = {
        (node.module, alias.name)
        for node in ast.parse(ours).body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert ("softmax_regression.sklearn", "LogisticRegression") in imports
    assert ("softmax_regression.sklearn", "LogisticRegressionCV") in imports
    assert ("sklearn.linear_model", "LogisticRegression") not in imports
    assert ("sklearn.linear_model", "SGDClassifier") in imports  # the rest of the line kept
    # Private helpers stay scikit-learn's; nothing else changed.
    assert ("sklearn.linear_model._logistic", "_logistic_regression_path") in imports
    assert len(ours.splitlines()) == len(shipped.splitlines()) + 1


def test_a_file_importing_the_classes_otherwise_is_refused():
    with pytest.raises(SystemExit, match="substitution needs updating"):
        sklearn_suite.ours_source("from sklearn.linear_model import LogisticRegression as LR\n")


def test_the_documented_list_reads_single_and_grouped_entries(tmp_path):
    doc = tmp_path / "page.md"
    doc.write_text(
        "# Page\n\n- `test_elsewhere`: not in the section.\n\n"
        "## scikit-learn's own tests\n\nSome words.\n\n"
        "- `test_a[1]`: one reason\n  that runs on.\n"
        "- `test_b[x-1]`, `test_b[x-2]`,\n  `test_c`: a shared reason.\n\n"
        "## Next\n\n- `test_after`: not in the section either.\n"
    )
    assert sklearn_suite.documented(doc) == {
        "test_a[1]": "one reason that runs on.",
        "test_b[x-1]": "a shared reason.",
        "test_b[x-2]": "a shared reason.",
        "test_c": "a shared reason.",
    }
    doc.write_text("## scikit-learn's own tests\n\n- `test_a`: once\n- `test_a`: twice\n")
    with pytest.raises(SystemExit, match="listed twice"):
        sklearn_suite.documented(doc)
    doc.write_text("## scikit-learn's own tests\n\n- `test_a` without a reason\n")
    with pytest.raises(SystemExit, match="reason"):
        sklearn_suite.documented(doc)


def test_docs_list_parses_and_names_tests_of_the_file():
    allowed = sklearn_suite.documented()
    assert allowed and all(reason for reason in allowed.values())
    shipped = (
        sklearn_suite.sklearn_dir() / "linear_model" / "tests" / "test_logistic.py"
    ).read_text()
    functions = {node.name for node in ast.parse(shipped).body if isinstance(node, ast.FunctionDef)}
    assert {test.split("[")[0] for test in allowed} <= functions


def test_junit_outcomes(tmp_path):
    junit = tmp_path / "junit.xml"
    junit.write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase classname="test_logistic" name="test_ok[1]" />'
        '<testcase classname="test_logistic" name="test_bad"><failure message="x" /></testcase>'
        '<testcase classname="test_logistic" name="test_err"><error message="x" /></testcase>'
        '<testcase classname="test_logistic" name="test_skip"><skipped message="x" /></testcase>'
        '<testcase classname="test_logistic.TestK" name="test_m" />'
        "</testsuite></testsuites>"
    )
    assert sklearn_suite.results(junit) == {
        "test_ok[1]": "passed",
        "test_bad": "failed",
        "test_err": "failed",
        "test_skip": "skipped",
        "TestK::test_m": "passed",
    }
