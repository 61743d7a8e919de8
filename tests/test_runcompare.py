"""compare-runs: two results directories are reported identical exactly when their
numbers are (provenance, timings, logs and figures aside)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from safetensors.numpy import save_file

from mergelab.runcompare import compare_runs


def make_run(root, value=1.0, seconds=3.0, code="v1"):
    (root / "merged").mkdir(parents=True)
    (root / "eval").mkdir()
    (root / "tables").mkdir()
    (root / "logs").mkdir()
    save_file({"w": np.full((3, 2), value, dtype=np.float32), "b": np.arange(2, dtype=np.float64)},
              str(root / "merged" / "m.safetensors"))
    np.savez(root / "eval" / "m.npz", label=np.array([0, 1, 2]), pred=np.array([0, 2, 2]))
    (root / "eval" / "m.json").write_text(json.dumps({
        "test": {"a": 0.5, "b": float("nan")}, "alpha": 0.3, "seconds": seconds,
        "provenance": {"code_version": code, "packages": {"torch": "x"}}}))
    (root / "tables" / "t.md").write_text("| a | 1.0 |\n")
    (root / "logs" / "m.log").write_text(f"took {seconds} s\n")
    return root


def test_a_copy_is_identical_whatever_its_timings_provenance_and_logs(tmp_path):
    a = make_run(tmp_path / "a")
    b = make_run(tmp_path / "b", seconds=99.0, code="v2")
    cmp = compare_runs(a, b)
    assert cmp.identical, cmp.summary()
    assert cmp.compared == 4  # tensor, predictions, metrics, table; the log is not compared


def test_one_ulp_in_a_tensor_is_a_difference(tmp_path):
    a = make_run(tmp_path / "a")
    b = make_run(tmp_path / "b", value=float(np.nextafter(np.float32(1.0), np.float32(2.0))))
    cmp = compare_runs(a, b)
    assert cmp.differ == ["merged/m.safetensors"]
    assert not cmp.identical


@pytest.mark.parametrize("edit, expected", [
    (lambda r: (r / "tables" / "t.md").write_text("| a | 1.1 |\n"), "tables/t.md"),
    (lambda r: np.savez(r / "eval" / "m.npz", label=np.array([0, 1, 2]), pred=np.array([0, 1, 2])),
     "eval/m.npz"),
    (lambda r: (r / "eval" / "m.json").write_text(json.dumps(
        {"test": {"a": 0.5, "b": float("nan")}, "alpha": 0.4, "seconds": 3.0})), "eval/m.json"),
])
def test_a_changed_number_anywhere_is_reported(tmp_path, edit, expected):
    a, b = make_run(tmp_path / "a"), make_run(tmp_path / "b")
    edit(b)
    assert compare_runs(a, b).differ == [expected]


def test_files_present_on_one_side_only_are_listed(tmp_path):
    a, b = make_run(tmp_path / "a"), make_run(tmp_path / "b")
    shutil.copy(a / "tables" / "t.md", a / "tables" / "extra.csv")
    (b / "eval" / "m.npz").unlink()
    cmp = compare_runs(a, b)
    assert cmp.only_a == ["eval/m.npz", "tables/extra.csv"]
    assert cmp.only_b == [] and not cmp.identical


def test_a_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a results directory"):
        compare_runs(tmp_path / "nope", tmp_path)


def test_cli_exit_status_says_whether_runs_are_identical(tmp_path, capsys):
    from mergelab.cli import run
    a, b = make_run(tmp_path / "a"), make_run(tmp_path / "b", seconds=7.0)
    assert run(["compare-runs", str(a), str(b)]) == 0
    assert "identical" in capsys.readouterr().out
    (b / "tables" / "t.md").write_text("| a | 2.0 |\n")
    assert run(["compare-runs", str(a), str(b)]) == 1
    assert "differ: tables/t.md" in capsys.readouterr().out
