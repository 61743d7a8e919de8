"""Reliability, tested: bad configs fail before any job runs; bad inputs fail at the CLI
with a message naming the file and the problem and leave no output; a job killed
mid-write (SIGKILL) leaves nothing Snakemake treats as complete, and the rerun
reproduces the original bytes. See docs/troubleshooting.md."""
from __future__ import annotations

import base64
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from conftest import (BIN, copy_nano_workflow, copy_run, nano_config, nano_results, planned,
                      sha_tree, smk, tool_env)

pytestmark = pytest.mark.slow


# ------------------------------------------------------------------ bad config


@pytest.fixture(scope="module")
def bare_workflow(tmp_path_factory) -> Path:
    return copy_nano_workflow(tmp_path_factory.mktemp("badcfg") / "wf")


def _set(cfg: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    for p in parents:
        cfg = cfg[p]
    cfg[last] = value


BAD_CONFIGS = {
    # name: (edit, text the error must contain)
    "unknown_key": (lambda c: _set(c, "finetune.full.lrr", 0.1), "finetune.full"),
    "wrong_type": (lambda c: _set(c, "seed", "zero"), "seed"),
    "unknown_method": (lambda c: _set(c, "methods.task_arithmetic.method", "no_such_method"),
                       "methods.task_arithmetic.method"),
    "unknown_task": (lambda c: _set(c, "suites.duo", ["digits", "no_such_task"]), "suites.duo"),
    "empty_alpha_grid": (lambda c: _set(c, "evaluation.alpha_grid", []), "evaluation.alpha_grid"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_fails_before_any_job(bare_workflow, case):
    edit, key = BAD_CONFIGS[case]
    cfg = nano_config()
    edit(cfg)
    bad = bare_workflow / "config" / f"bad_{case}.yaml"
    bad.write_text(yaml.safe_dump(cfg, sort_keys=False))
    proc = smk(bare_workflow, "--configfile", str(bad.relative_to(bare_workflow)), "-n",
               check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-2000:]
    assert "invalid config" in out or "config key" in out, out[-2000:]
    assert f"'{key}" in out, out[-2000:]          # the message names the key
    assert "Job stats" not in out and "rule " not in proc.stdout   # no job planned
    assert not (bare_workflow / "results").exists() and not (bare_workflow / "data").exists()


# ------------------------------------------------------------------ bad inputs at the CLI


def recorded_command(wd: Path, output: str) -> list[str]:
    """The CLI command Snakemake ran for ``output`` (from .snakemake/metadata), as argv,
    without the log redirection."""
    key = base64.urlsafe_b64encode(output.encode()).decode()
    meta = json.loads((wd / ".snakemake" / "metadata" / key).read_text())
    argv = shlex.split(meta["shellcmd"])
    if ">" in argv:
        argv = argv[: argv.index(">")]
    assert argv[:3] == ["python", "-m", "mergelab.cli"], argv
    return [sys.executable] + argv[1:]


def with_args(argv: list[str], **repl) -> list[str]:
    """argv with the value after --<name> replaced (name given with _ for -)."""
    argv = list(argv)
    for name, value in repl.items():
        flag = "--" + name.replace("_", "-")
        i = argv.index(flag)
        argv[i + 1] = str(value)
    return argv


#: what Snakemake exports to a `threads: 1` job (results depend on the thread count)
ONE_THREAD = {k: "1" for k in ("OMP_NUM_THREADS", "GOTO_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                               "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")}


def cli(wd: Path, argv: list[str], env_extra: dict | None = None, **kw) -> subprocess.CompletedProcess:
    env = tool_env(wd, PYTHONPATH=str(wd / "src"), **ONE_THREAD, **(env_extra or {}))
    return subprocess.run(argv, cwd=wd, capture_output=True, text=True, env=env, timeout=600, **kw)


def assert_fails_cleanly(proc, outputs, *needles):
    err = proc.stderr
    assert proc.returncode != 0, (proc.stdout + err)[-3000:]
    assert "Traceback" not in err, err[-3000:]     # a clear message, not a stack trace
    for n in needles:
        assert n in err, f"{n!r} not in:\n{err[-3000:]}"
    for o in outputs:
        assert not Path(o).exists(), f"{o} left behind"
        assert not list(Path(o).parent.glob(f".{Path(o).name}.*.tmp")), f"temp file of {o} left"


@pytest.fixture(scope="module")
def work(nano_run, tmp_path_factory) -> Path:
    """A copy of the nano run that the tests in this module may write bad files into."""
    return copy_run(nano_run, tmp_path_factory.mktemp("bad") / "wf")


R = "results/nano"


def test_truncated_checkpoint(work):
    good = work / R / "finetune/full/digits.safetensors"
    bad = work / "bad/truncated.safetensors"
    bad.parent.mkdir(exist_ok=True)
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    out = work / "bad/out/tv_truncated.safetensors"
    argv = with_args(recorded_command(work, f"{R}/taskvectors/full/digits.safetensors"),
                     finetuned=bad.relative_to(work), out=out)
    assert_fails_cleanly(cli(work, argv), [out], str(bad.relative_to(work)), "safetensors")


def test_garbage_pretrained(work):
    bad = work / "bad/garbage.safetensors"
    bad.parent.mkdir(exist_ok=True)
    bad.write_bytes(b"\x00not a safetensors file" * 100)
    out = work / "bad/out/tv_garbage.safetensors"
    argv = with_args(recorded_command(work, f"{R}/taskvectors/full/digits.safetensors"),
                     pretrained=bad.relative_to(work), out=out)
    assert_fails_cleanly(cli(work, argv), [out], "garbage.safetensors")


def test_checkpoint_of_another_architecture(work):
    sd = load_file(str(work / R / "finetune/full/digits.safetensors"))
    key = sorted(k for k, v in sd.items() if v.ndim == 2)[0]
    sd[key] = torch.zeros(sd[key].shape[0] + 3, sd[key].shape[1])   # a wider layer
    bad = work / "bad/other_arch.safetensors"
    bad.parent.mkdir(exist_ok=True)
    save_file(sd, str(bad))
    out = work / "bad/out/tv_arch.safetensors"
    argv = with_args(recorded_command(work, f"{R}/taskvectors/full/digits.safetensors"),
                     finetuned=bad.relative_to(work), out=out)
    assert_fails_cleanly(cli(work, argv), [out], "other_arch.safetensors", key, "architecture")


def test_task_vector_with_nan_inf(work):
    sd = load_file(str(work / R / "taskvectors/full/signs.safetensors"))
    key = sorted(sd)[0]
    sd[key] = sd[key].clone()
    sd[key].view(-1)[0] = float("nan")
    sd[key].view(-1)[-1] = float("inf")
    bad = work / "bad/nan_signs.safetensors"
    bad.parent.mkdir(exist_ok=True)
    save_file(sd, str(bad))
    tau, info = work / "bad/out/merged.safetensors", work / "bad/out/merged.json"
    argv = recorded_command(work, f"{R}/merged/full/duo/task_arithmetic.safetensors")
    i = argv.index(f"{R}/taskvectors/full/signs.safetensors")
    argv[i] = str(bad.relative_to(work))
    argv = with_args(argv, out_tau=tau, out_json=info)
    assert_fails_cleanly(cli(work, argv), [tau, info], "nan_signs.safetensors", key, "NaN/Inf")


def test_lora_adapter_of_another_rank(work):
    # the config says rank 4 (finetune.lora.rank); this adapter has rank 8
    k = "vision_model.encoder.layers.0.self_attn.q_proj.weight"
    bad = work / "bad/lora_rank8.safetensors"
    bad.parent.mkdir(exist_ok=True)
    save_file({f"{k}.lora_A": torch.randn(8, 64), f"{k}.lora_B": torch.zeros(64, 8)}, str(bad))
    out = work / "bad/out/tv_lora.safetensors"
    full = recorded_command(work, f"{R}/taskvectors/full/digits.safetensors")
    model = json.loads(full[full.index("--spec") + 1])["model"]
    spec = json.dumps({"model": model, "lora": {"rank": 4, "alpha": 4}})
    argv = [sys.executable, "-m", "mergelab.cli", "extract", "--regime", "lora", "--spec", spec,
            "--finetuned", str(bad.relative_to(work)),
            "--pretrained", f"{R}/pretrained/clip.safetensors", "--out", str(out)]
    assert_fails_cleanly(cli(work, argv), [out], "lora_rank8.safetensors", "rank 8", "rank 4")


def _write_dataset(src: Path, dst: Path, drop_split: str | None = None,
                   shift_labels: str | None = None) -> None:
    """A copy of a task dataset without one split, or with one split's labels out of range."""
    import datasets
    dsd = datasets.load_from_disk(str(src))
    if drop_split:
        del dsd[drop_split]
    if shift_labels:
        ds = dsd[shift_labels].cast_column("label", datasets.Value("int64"))
        dsd[shift_labels] = ds.map(lambda r: {"label": r["label"] + 100})
    dsd.save_to_disk(str(dst))
    if shift_labels:  # declare the ClassLabel again, as a buggy converter would
        info_path = dst / shift_labels / "dataset_info.json"
        info = json.loads(info_path.read_text())
        ref = json.loads((dst / "train" / "dataset_info.json").read_text())
        info["features"]["label"] = ref["features"]["label"]
        info_path.write_text(json.dumps(info))


@pytest.mark.parametrize("problem", ["missing_split", "labels_outside_classes"])
def test_bad_dataset(work, problem):
    bad = work / f"bad/data_{problem}"
    shutil.rmtree(bad, ignore_errors=True)
    bad.parent.mkdir(exist_ok=True)
    if problem == "missing_split":
        _write_dataset(work / "data/nano/digits", bad, drop_split="validation")
        needles = [bad.name, "validation", "missing"]
    else:
        _write_dataset(work / "data/nano/digits", bad, shift_labels="test")
        needles = [bad.name, "'test'", "outside"]
    out = work / f"bad/out/head_{problem}.safetensors"
    argv = with_args(recorded_command(work, f"{R}/heads/digits.safetensors"),
                     data=bad.relative_to(work), out=out)
    assert_fails_cleanly(cli(work, argv), [out], *needles)


# ------------------------------------------------------------------ SIGKILL mid-write


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 900) -> dict:
    t0 = time.time()
    while not path.exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"process ended (rc {proc.returncode}) before pausing:\n"
                                 f"{(out or '')[-3000:]}\n{(err or '')[-3000:]}")
        if time.time() - t0 > timeout:
            proc.kill()
            raise AssertionError(f"no pause marker after {timeout} s")
        time.sleep(0.2)
    return json.loads(path.read_text())


def pause_env(wd: Path, at: str, marker_dir: Path) -> dict:
    return tool_env(wd, MERGELAB_TEST_PAUSE_AT=at, MERGELAB_TEST_PAUSE_DIR=str(marker_dir))


def test_sigkill_during_finetune_cli(nano_run, tmp_path):
    """The CLI killed after writing the weights' bytes but before the rename: no output."""
    wd = copy_run(nano_run, tmp_path / "wf")
    target = f"{R}/finetune/full/digits.safetensors"
    argv = with_args(recorded_command(wd, target), out_weights="killed/w.safetensors",
                     out_metrics="killed/w.json")
    marker = tmp_path / "marker"
    proc = subprocess.Popen(argv, cwd=wd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**pause_env(wd, "killed/w.safetensors", marker),
                                            "PYTHONPATH": str(wd / "src"), **ONE_THREAD})
    info = wait_for(marker / "paused", proc)
    assert Path(info["tmp"]).stat().st_size > 0            # it had started writing
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (wd / "killed/w.safetensors").exists() and not (wd / "killed/w.json").exists()
    # the rerun removes the dead writer's temp file and reproduces the run's bytes
    proc = cli(wd, argv)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not list((wd / "killed").glob(".*.tmp"))
    assert sha_tree(wd / "killed")["w.safetensors"] == sha_tree(wd / R / "finetune/full")[
        "digits.safetensors"]


def test_sigkill_during_snakemake_run(nano_run, tmp_path):
    """A run in progress (fine-tuning of one task and everything after it still to do):
    the fine-tuning job is SIGKILLed mid-write (Snakemake survives), then Snakemake itself
    and its merge job are SIGKILLed mid-write (a lost node). Neither leaves an output that
    Snakemake treats as complete, and the rerun gives byte-identical results."""
    wd = copy_run(nano_run, tmp_path / "wf")
    res = nano_results(wd)
    before = sha_tree(res, "*.safetensors")
    before_eval = {p: json.loads((res / "eval" / p).read_text())["test"]
                   for p in sha_tree(res / "eval", "*.json")}
    # back to the state of a run that has not fine-tuned 'digits' yet
    ft = res / "finetune/full/digits.safetensors"
    merged = res / "merged/full/duo/task_arithmetic.safetensors"
    for p in [ft, ft.with_suffix(".json"), res / "taskvectors/full/digits.safetensors",
              res / "eval/full/individual/digits.json", res / "manifest.json"]:
        p.unlink()
    for d in ("merged", "eval/full/duo", "tables", "figures"):
        shutil.rmtree(res / d)
    sm = [str(BIN / "snakemake"), "--cores", "2"]

    # 1. kill the fine-tuning job only
    marker = tmp_path / "m1"
    proc = subprocess.Popen(sm, cwd=wd, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=pause_env(wd, "finetune/full/digits.safetensors", marker),
                            start_new_session=True)
    info = wait_for(marker / "paused", proc)
    assert Path(info["tmp"]).stat().st_size > 0
    os.kill(info["pid"], signal.SIGKILL)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode != 0, out[-2000:]
    assert "Error in rule finetune" in out + err
    assert not ft.exists() and not ft.with_suffix(".json").exists()

    # 2. kill Snakemake and its job (the whole process group) while the merge writes
    marker = tmp_path / "m2"
    proc = subprocess.Popen(sm, cwd=wd, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=pause_env(wd, "merged/full/duo/task_arithmetic.safetensors", marker),
                            start_new_session=True)
    wait_for(marker / "paused", proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert ft.exists()                                  # finished before the kill
    assert not merged.exists() and not merged.with_suffix(".json").exists()
    assert any((wd / ".snakemake" / "incomplete").iterdir())   # Snakemake knows the job died

    # 3. rerun: `--unlock` (Snakemake itself was killed, its lock is stale), then a plain
    # run completes (the profile sets rerun-incomplete) with identical results
    smk(wd, "--unlock")
    smk(wd)
    assert planned(wd) == {}
    assert not [p for p in wd.rglob(".*.tmp") if ".snakemake" not in p.parts]
    assert sha_tree(res, "*.safetensors") == before
    for p, test_acc in before_eval.items():
        assert json.loads((res / "eval" / p).read_text())["test"] == test_acc, p


def test_jobs_use_the_workflows_interpreter_without_an_activated_env(tmp_path):
    """`.venv/bin/snakemake` with the environment not on PATH: a job's `python` is still the
    environment's (rules/common/hooks.smk puts the interpreter's bin directory first on PATH)."""
    wd = copy_nano_workflow(tmp_path / "wf")
    env = tool_env(wd, PATH="/usr/bin:/bin", MERGELAB_FORKSERVER="off")
    smk(wd, "data/nano/signs", env=env)
    assert (wd / "data" / "nano" / "signs" / "mini_meta.json").is_file()
