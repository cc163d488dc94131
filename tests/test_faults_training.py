"""Faults around training: a run folder used by two processes at once, non-finite losses and
weights, runs killed before or after their first checkpoint, unsafe checkpoints; and what the training loop promises besides (no waiting for the device between
logging steps, validation time apart from the steps, items decoding only what the loss reads,
results independent of the loader workers, progress from the first iteration).

Each fault asserts the exit status 2, one line naming the folder, key or file, and that nothing
was written or changed (the folder's files hashed before and after).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import gsbench.data.dataset as dataset_module
import gsbench.engine.train as train_module
from gsbench.cli import app
from gsbench.engine.checkpoint import load_checkpoint, load_model_weights
from gsbench.engine.run_dir import LOCK_FILE, run_dir_lock
from gsbench.engine.train import train
from gsbench.errors import GsbenchError
from gsbench.recipes import load_recipe
from test_train import make_prepared_dataset, weights_equal

SHORT = ["train.iterations=4", "train.val_every=0", "train.log_every=2", "train.checkpoint_every=2"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return make_prepared_dataset(tmp_path_factory.mktemp("prepared"))


def tree_hash(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (relative path -> sha256), the lock file included."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line_error(result, *needles: str) -> str:
    """The CLI result is exit 2 with a single ``error:`` line holding every needle."""
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert "\x1b" not in lines[0]
    return lines[0]


def train_args(data_root: Path, out: Path, *overrides: str) -> list[str]:
    args = ["train", "--recipe", "fcn101-smoke", "--data", str(data_root), "--out", str(out), "-q"]
    for item in (*SHORT, *overrides):
        args += ["--set", item]
    return args


def _environment() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(key, None)
    return env


def _wait_for(condition, process: subprocess.Popen, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the process ended before {what}: {process.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


# --- one process per run folder -----------------------------------------------------------------


def _holder(folder: Path) -> subprocess.Popen:
    """Another process holding ``folder``'s lock until its stdin closes."""
    code = ("import sys\nfrom gsbench.engine.run_dir import run_dir_lock\n"
            f"with run_dir_lock({str(folder)!r}):\n    print('held', flush=True)\n    sys.stdin.read()\n")
    process = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=_environment())
    assert process.stdout.readline().strip() == "held", process.stderr.read()
    return process


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_locked_run_folder_refuses_train_resume_and_eval(data_root, tmp_path):
    runner = CliRunner()
    run = tmp_path / "run"
    assert runner.invoke(app, train_args(data_root, run)).exit_code == 0
    holder = _holder(run)
    try:
        before = tree_hash(run)
        needles = (str(run), f"PID {holder.pid}", "in use by another gsbench process")
        one_line_error(runner.invoke(app, train_args(data_root, run)), *needles)
        one_line_error(runner.invoke(app, ["train", "--out", str(run), "--resume", "-q"]), *needles)
        one_line_error(runner.invoke(app, ["eval", str(run), "--data", str(data_root), "-q",
                                           "--crop-factors", "none"]), *needles)
        one_line_error(runner.invoke(app, ["eval", "--pred-dir", str(data_root / "labels"),
                                           "--data", str(data_root), "--split", "val",
                                           "--crop-factors", "none",
                                           "--out", str(run / "mine.json")]), *needles)
        fresh = tmp_path / "fresh"
        holder_of_fresh = _holder(fresh)
        try:
            one_line_error(runner.invoke(app, train_args(data_root, fresh)), str(fresh),
                           f"PID {holder_of_fresh.pid}")
        finally:
            holder_of_fresh.stdin.close()
            holder_of_fresh.wait(timeout=60)
        assert tree_hash(run) == before
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert not (run / LOCK_FILE).exists() and not fresh.exists()  # released, and nothing left
    assert runner.invoke(app, ["eval", str(run), "--data", str(data_root), "-q",
                               "--crop-factors", "none"]).exit_code == 0


def test_the_lock_is_the_operating_systems_and_leaves_no_folder_behind(tmp_path):
    folder = tmp_path / "a" / "run"
    with run_dir_lock(folder):
        assert (folder / LOCK_FILE).read_text() == f"{os.getpid()}\n"
        with pytest.raises(GsbenchError, match=f"run folder is in use by another gsbench process \\(PID {os.getpid()}\\)"):
            with run_dir_lock(folder):
                pass
    assert not (tmp_path / "a").exists()  # created for the lock only: removed again
    killed = _holder(folder)
    killed.kill()  # SIGKILL: the lock file stays, the lock does not
    killed.wait(timeout=60)
    assert (folder / LOCK_FILE).is_file()
    with run_dir_lock(folder):
        assert (folder / LOCK_FILE).read_text() == f"{os.getpid()}\n"


def test_a_forked_child_outliving_its_killed_parent_does_not_hold_the_lock(tmp_path):
    """A data-loader worker forked by a training lives on for a while after its parent is
    killed; the folder must be free as soon as the parent is gone."""
    folder = tmp_path / "run"
    started = tmp_path / "child-started"
    code = ("import multiprocessing, os, sys, time\n"
            "from gsbench.engine.run_dir import run_dir_lock\n"
            "def work(flag):\n"
            "    open(flag, 'w').close()  # running its own code: past the fork handlers\n"
            "    time.sleep(60)\n"
            f"with run_dir_lock({str(folder)!r}):\n"
            f"    child = multiprocessing.get_context('fork').Process(target=work, args=({str(started)!r},))\n"
            "    child.start()\n"
            f"    while not os.path.exists({str(started)!r}):\n"
            "        time.sleep(0.01)\n"
            "    print(child.pid, flush=True)\n"
            "    sys.stdin.read()\n")
    parent = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=_environment())
    child_pid = int(parent.stdout.readline())
    try:
        parent.kill()
        parent.wait(timeout=60)
        os.kill(child_pid, 0)  # the child still runs
        with run_dir_lock(folder):
            assert (folder / LOCK_FILE).read_text() == f"{os.getpid()}\n"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child_pid, signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_two_trainings_into_one_folder_one_wins_and_sigkill_resumes_bitwise(data_root, tmp_path):
    """Two real `gsbench train --out D` at once: the second exits 2 naming the first's PID and
    changes nothing; the first, killed with SIGKILL after a checkpoint, resumes to the weights
    an uninterrupted run has at the same iteration."""
    torch.set_num_threads(1)  # as the subprocesses' OMP_NUM_THREADS: the same float sums
    overrides = ["train.iterations=100000", "train.checkpoint_every=4", "train.log_every=4"]
    run = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "gsbench.cli",
                              *train_args(data_root, run, *overrides)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=_environment())
    _wait_for(lambda: (run / "checkpoints" / "last.pt").is_file(), first, "the first checkpoint")
    second = subprocess.run([sys.executable, "-m", "gsbench.cli",
                             *train_args(data_root, run, *overrides, "train.lr=0.02")],
                            capture_output=True, text=True, env=_environment(), timeout=120)
    assert second.returncode == 2 and f"(PID {first.pid})" in second.stderr, second.stderr
    assert "lr: 0.02" not in (run / "recipe.yaml").read_text()
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=60)
    assert (run / LOCK_FILE).is_file()  # left behind by the kill, but no longer locked
    stop = load_checkpoint(run / "checkpoints" / "last.pt")["iteration"] + 3
    resumed = CliRunner().invoke(app, ["train", "--out", str(run), "--resume", "-q",
                                       "--stop-after", str(stop)])
    assert resumed.exit_code == 0, resumed.output
    whole = tmp_path / "whole"
    train(load_recipe("fcn101-smoke", [*SHORT, *overrides]), whole, data_root=data_root,
          quiet=True, stop_after=stop)
    assert weights_equal(load_checkpoint(run / "checkpoints" / "last.pt")["model"],
                         load_checkpoint(whole / "checkpoints" / "last.pt")["model"])


# --- killed before the first checkpoint ---------------------------------------------------------


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_run_stopped_before_its_first_checkpoint_restarts_with_resume(data_root, tmp_path,
                                                                        monkeypatch):
    overrides = ["train.iterations=3", "train.checkpoint_every=100", "train.log_every=1"]
    recipe = load_recipe("fcn101-smoke", [*SHORT, *overrides])
    whole = train(recipe, tmp_path / "whole", data_root=data_root, quiet=True)
    run = tmp_path / "run"
    step = train_module._Trainer._step

    def dies_at_the_third_step(self, batch):
        if self.iteration == 2:
            raise KeyboardInterrupt  # as ^C or a kill before any checkpoint
        return step(self, batch)

    with monkeypatch.context() as patch:
        patch.setattr(train_module._Trainer, "_step", dies_at_the_third_step)
        with pytest.raises(KeyboardInterrupt):
            train(recipe, run, data_root=data_root, quiet=True, command=["gsbench", "train"])
    assert (run / "recipe.yaml").is_file() and not (run / "checkpoints").exists()
    assert (run / "log.csv").read_text().count("\n") == 3  # iterations 1 and 2 were logged
    runner = CliRunner()
    before = tree_hash(run)
    one_line_error(runner.invoke(app, train_args(data_root, run, *overrides)), str(run),
                   "stopped before its first checkpoint", "pass --resume")
    assert tree_hash(run) == before
    resumed = runner.invoke(app, ["train", "--out", str(run), "--resume", "-q"])
    assert resumed.exit_code == 0, resumed.output
    assert weights_equal(load_model_weights(run), load_model_weights(tmp_path / "whole"))
    rows = (run / "log.csv").read_text().splitlines()[1:]
    assert [row.split(",")[0] for row in rows] == ["1", "2", "3"]
    assert [float(row.split(",")[3]) for row in rows] == [r["loss"] for r in whole.log]
    assert len((run / "command.txt").read_text().splitlines()) == 2


# --- non-finite losses and weights ---------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_the_nan_stop_keeps_a_finite_checkpoint(data_root, tmp_path):
    recipe = load_recipe("fcn101-smoke", ["train.lr=1e6", "train.iterations=20", "train.log_every=3",
                                          "train.checkpoint_every=1", "train.val_every=0"])
    with pytest.raises(GsbenchError, match=r"loss is (nan|inf) at iteration (\d+); training stopped") as info:
        train(recipe, tmp_path / "run", data_root=data_root, quiet=True)
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert f"(iteration {state['iteration']}) is the last good checkpoint" in str(info.value)
    bad_iteration = int(str(info.value).split(" at iteration ")[1].split(";")[0])
    assert state["iteration"] < bad_iteration
    tensors = [*state["model"].values(),
               *(v for s in state["optimizer"]["state"].values() for v in s.values())]
    assert len(tensors) > len(state["model"])  # the momentum buffers are checked too
    assert all(torch.isfinite(t).all() for t in tensors if t.is_floating_point())
    assert not (tmp_path / "run" / "checkpoints" / "final.pt").exists()


class _Overflowing(nn.Module):
    """Finite losses, but a buffer that overflows to inf at the second step."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.head = nn.Conv2d(3, num_classes, 1)
        self.register_buffer("running_scale", torch.ones(1))

    def forward(self, images):
        if self.training:
            self.running_scale.mul_(3e38)
        return {"out": self.head(images)}


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_checkpoint_is_never_written_from_non_finite_weights(data_root, tmp_path):
    recipe = load_recipe("fcn101-smoke", [*SHORT, "train.checkpoint_every=1"])
    run = tmp_path / "run"
    with pytest.raises(GsbenchError, match=r"weights are not finite at iteration 2 \(running_scale\); "
                                           r"training stopped and .*last.pt \(iteration 1\) is the last good"):
        train(recipe, run, data_root=data_root, quiet=True,
              build_model=lambda r: _Overflowing(r.data.num_classes))
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["iteration"] == 1 and torch.isfinite(state["model"]["running_scale"]).all()


def test_an_unsafe_checkpoint_is_named_in_one_plain_line(data_root, tmp_path):
    runner = CliRunner()
    run = tmp_path / "run"
    assert runner.invoke(app, train_args(data_root, run, "train.iterations=2")).exit_code == 0
    (run / "checkpoints" / "final.pt").unlink()
    for unsafe, named in ((argparse.Namespace(a=1), "GLOBAL argparse.Namespace was not an allowed"),
                          (os.system, "GLOBAL posix.system whose module posix is blocked")):
        buffer = io.BytesIO()
        pickle.dump({"format": "gsbench-checkpoint/1", "model": unsafe}, buffer, protocol=2)
        (run / "checkpoints" / "last.pt").write_bytes(buffer.getvalue())
        before = tree_hash(run)
        line = one_line_error(runner.invoke(app, ["train", "--out", str(run), "--resume", "-q"]),
                              "last.pt: not a readable checkpoint", named)
        # torch's message carries terminal escapes and advice to load the file unsafely
        assert "trust the source" not in line and "weights_only" not in line
        assert all(c.isprintable() for c in line)
        assert tree_hash(run) == before


# --- the training loop ----------------------------------------------------------------------------


_READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__")


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_the_engine_reads_no_tensor_between_logging_steps(data_root, tmp_path, monkeypatch):
    """On a GPU every read of a tensor by the host waits for the device: the engine's own code
    reads the accumulated losses at logging steps and checkpoints only. (The losses never read
    a device tensor: tests/test_losses.py runs them on the meta device.)"""
    reads: list[tuple[int, str]] = []
    state = {"iteration": 0}

    def counting(name):
        original = getattr(torch.Tensor, name)

        def wrapper(self, *args, **kwargs):
            if sys._getframe(1).f_globals.get("__name__") == "gsbench.engine.train":
                reads.append((state["iteration"], name))
            return original(self, *args, **kwargs)
        return wrapper

    for name in _READS:
        monkeypatch.setattr(torch.Tensor, name, counting(name))

    def build(recipe):
        from gsbench.recipes import build_model_from_recipe

        model = build_model_from_recipe(recipe)
        model.register_forward_pre_hook(lambda m, a: state.update(iteration=state["iteration"] + m.training))
        return model

    recipe = load_recipe("fcn101-smoke", ["train.iterations=12", "train.log_every=6",
                                          "train.checkpoint_every=12", "train.val_every=0"])
    train(recipe, tmp_path / "run", data_root=data_root, quiet=True, build_model=build)
    assert {it for it, _ in reads} == {6, 12}, reads


class _Clock:
    """``time`` for the engine: each reading advances 1 ms; a validation image takes 100 s."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self) -> float:
        self.now += 0.001
        return self.now


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_validation_time_is_its_own_column_and_not_in_seconds_per_iteration(data_root, tmp_path,
                                                                            monkeypatch):
    clock, infer = _Clock(), train_module.infer_whole

    def slow_inference(model, images):
        clock.now += 100.0
        return infer(model, images)

    monkeypatch.setattr(train_module, "time", clock)
    monkeypatch.setattr(train_module, "infer_whole", slow_inference)
    recipe = load_recipe("fcn101-smoke", ["train.iterations=6", "train.log_every=2",
                                          "train.val_every=2", "train.checkpoint_every=100"])
    result = train(recipe, tmp_path / "run", data_root=data_root, quiet=True)
    header, *lines = (tmp_path / "run" / "log.csv").read_text().splitlines()
    rows = [dict(zip(header.split(","), line.split(","))) for line in lines]
    assert len(rows) == len(result.log) == 3
    for row in rows:
        assert 200.0 <= float(row["val_time"]) < 201.0  # two validation images
        assert float(row["sec_per_iter"]) < 1.0, rows  # the steps alone
    assert float(rows[-1]["time"]) > 400.0  # the run's time counts the two validations before it


def _edges_read(monkeypatch, recipe_name, data_root, tmp_path) -> bool:
    read = dataset_module.read_label
    paths: list[str] = []
    monkeypatch.setattr(dataset_module, "read_label", lambda p: paths.append(str(p)) or read(p))
    recipe = load_recipe(recipe_name, ["train.iterations=1", "train.val_every=0", "train.num_workers=0"])
    train(recipe, tmp_path / recipe_name, data_root=data_root, quiet=True)
    assert any("/labels/" in p for p in paths)
    return any("/edges/" in p for p in paths)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_items_decode_edges_only_for_losses_that_read_them(data_root, tmp_path, monkeypatch):
    assert not _edges_read(monkeypatch, "fcn101-smoke", data_root, tmp_path)
    assert _edges_read(monkeypatch, "gscnn101-smoke", data_root, tmp_path)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_training_does_not_depend_on_the_loader_workers(data_root, tmp_path):
    """Two epochs (an epoch boundary inside the loader's endless stream), a stop and a resume."""
    overrides = ["train.iterations=5", "train.log_every=1", "train.checkpoint_every=2",
                 "train.val_every=0"]
    runs = {}
    for workers in (0, 2):
        recipe = load_recipe("psanet101-smoke", [*overrides, f"train.num_workers={workers}"])
        run = tmp_path / f"workers{workers}"
        train(recipe, run, data_root=data_root, quiet=True, stop_after=3)
        runs[workers] = train(recipe, run, data_root=data_root, quiet=True, resume=True)
    assert [float(r["loss"]) for r in runs[0].log] == [float(r["loss"]) for r in runs[2].log]
    assert weights_equal(load_model_weights(tmp_path / "workers0"),
                         load_model_weights(tmp_path / "workers2"))


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_progress_lines_start_at_the_first_iteration(data_root, tmp_path):
    result = CliRunner().invoke(app, ["train", "--recipe", "fcn101-smoke", "--data", str(data_root),
                                      "--out", str(tmp_path / "run"), "--set", "train.iterations=4",
                                      "--set", "train.log_every=4", "--set", "train.val_every=0"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("iter ")]
    assert [line.split()[1] for line in lines] == ["1/4", "4/4"]
    assert all("loss=" in line and "s/it" in line and "ETA" in line for line in lines)
    quiet = CliRunner().invoke(app, ["train", "--recipe", "fcn101-smoke", "--data", str(data_root),
                                     "--out", str(tmp_path / "quiet"), "-q",
                                     "--set", "train.iterations=2", "--set", "train.val_every=0"])
    assert quiet.exit_code == 0 and quiet.output == ""
