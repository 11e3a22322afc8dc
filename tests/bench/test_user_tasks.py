"""``andi-bench compare`` on a user's own task and optimizers: the worked example end to end, the Task contract's
one-line refusals (exit 2, before any run), changed task files, user optimizers in the registry and the fair sweep,
and a throwaway installed package registering both through entry points."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

import andi
from andi.bench import cli
from andi.bench.protocols.arms import arm_for_optimizer
from andi.optim import OptimizerFactoryError
from andi.optim.registry import markdown_table

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "my_task.py"
#: A small budget for the in-process sweeps: one tuning and three reporting seeds, the smoke size's steps.
FAST = ["--size", "smoke", "--executor", "serial", "--threads", "1", "--reporting-seeds", "1001,1002,1003"]


_COMPARE = [sys.executable, "-m", "andi.bench", "compare"]


@pytest.fixture(autouse=True)
def _registry_as_it_was() -> Iterator[None]:
    """Optimizers a test registers (by spec on the command line, too) leave the registry with the test."""
    from andi.optim import OPTIMIZERS

    before = set(OPTIMIZERS)
    yield
    for name in set(OPTIMIZERS) - before:
        andi.unregister_optimizer(name)


def _records(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in out.glob("*.json") if len(p.stem) == 64]


def _env() -> dict[str, str]:
    env = {**os.environ, "CI": "1", "PYTHONPATH": str(ROOT / "src")}
    env.pop("ANDI_DATA_ROOT", None)
    return env


# ------------------------------------------------------------------------------------------ the worked example
def test_the_example_runs_through_compare_and_its_records_name_its_source(tmp_path: Path) -> None:
    """The real entry point, the README's way: workers load the task from its file; no dataset folder is needed."""
    out = tmp_path / "out"
    spec = f"{EXAMPLE}:TabularTask"
    proc = subprocess.run(
        [*_COMPARE, spec, "--size", "smoke", "--out", str(out), "--data-root", str(tmp_path / "no-data-here")],
        capture_output=True,
        text=True,
        timeout=600,
        env=_env(),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = _records(out)
    sha = hashlib.sha256(EXAMPLE.read_bytes()).hexdigest()
    assert records and {r["config"]["task"] for r in records} == {spec}
    assert {r["config"]["task_source"] for r in records} == {sha}
    assert {r["config"]["optimizer"] for r in records} == {"andi", "andi-hybrid", "adamw", "muon"}
    verdict = proc.stdout[proc.stdout.index("Verdict on") :]
    assert verdict.startswith(f"Verdict on tabular-mlp (`{spec}`) (smoke size; test accuracy, higher is better")
    assert "ANDI:" in verdict and "ANDI (hybrid):" in verdict and "Holm over 4 comparisons" in verdict
    report = (out / "report.md").read_text()
    assert f"Task from outside the package: `{spec}`, source SHA-256 {sha}." in report


def test_a_changed_task_file_is_not_mixed_with_its_old_records(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    task_file = tmp_path / "my_task.py"
    shutil.copy(EXAMPLE, task_file)
    spec, out = f"{task_file}:TabularTask", tmp_path / "out"
    args = ["compare", spec, *FAST, "--optimizers", "andi,adamw", "--out", str(out), "--no-report"]
    assert cli.main(args) == 0
    first = _records(out)
    assert cli.main(args) == 0  # unchanged: everything is reused
    assert len(_records(out)) == len(first) and "0 runs computed" in capsys.readouterr().out
    task_file.write_text(task_file.read_text() + "\n# a comment changes the file's hash\n")
    assert cli.main(args) == 0
    assert "0 reused" in capsys.readouterr().out
    after = _records(out)
    assert len(after) == 2 * len(first)
    assert len({r["config"]["task_source"] for r in after}) == 2


# ----------------------------------------------------------------------------------------- the Task contract
_BASE = """
import math
import torch
from torch import nn
from andi.bench.tasks import SizeSpec, Task

class Good(Task):
    name = "good"
    sizes = {s: SizeSpec(steps=8, batch_size=8, eval_every=4) for s in ("full", "cpu", "smoke")}

    def _build_model(self, seed):
        return nn.Linear(3, 1)

    def train_batches(self, seed, *, batch_size=None, device="cpu", dtype=torch.float32):
        g = torch.Generator().manual_seed(seed)
        while True:
            yield (torch.randn(batch_size or 8, 3, generator=g),)

    def loss(self, model, batch):
        return model(batch[0]).pow(2).mean()

    def _evaluate(self, model, split, device, dtype):
        return {"loss": float(model.weight.pow(2).sum())}
"""
_BROKEN = {
    "NoLoss": (
        "class NoLoss(Task):\n    name = 'x'\n    sizes = Good.sizes\n    def _build_model(self, s): ...",
        "missing method(s) loss",
    ),
    "NotAModel": (
        "class NotAModel(Good):\n    def _build_model(self, s): return torch.zeros(3)",
        "build_model must return an nn.Module",
    ),
    "VectorLoss": (
        "class VectorLoss(Good):\n    def loss(self, m, b): return m(b[0]).squeeze(1)",
        "loss must return a scalar tensor, got a tensor of shape (8,)",
    ),
    "NumberLoss": (
        "class NumberLoss(Good):\n    def loss(self, m, b): return 1.0",
        "loss must return a scalar tensor, got float",
    ),
    "NanMetric": (
        "class NanMetric(Good):\n    def _evaluate(self, m, s, d, t): return {'loss': math.nan}",
        "finite 'loss' (the primary metric)",
    ),
    "NoMetric": (
        "class NoMetric(Good):\n    def _evaluate(self, m, s, d, t): return {'acc': 1.0}",
        "must return a dict with a finite 'loss'",
    ),
    "NoSmoke": ("class NoSmoke(Good):\n    sizes = {'cpu': Good.sizes['cpu']}", "no size 'smoke' (its sizes: cpu)"),
    "Raises": (
        "class Raises(Good):\n    def _build_model(self, s): raise RuntimeError('boom')",
        "build_model(0) raised RuntimeError: boom",
    ),
    "NotATask": ("class NotATask:\n    pass", "NotATask is not a subclass of andi.bench.tasks.Task"),
    "Missing": ("", "defines no 'Missing'"),
}


@pytest.fixture(scope="module")
def broken_tasks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tasks") / "broken.py"
    path.write_text(_BASE + "\n" + "\n\n".join(code for code, _ in _BROKEN.values()) + "\n")
    return path


@pytest.mark.parametrize("name", sorted(_BROKEN))
def test_a_broken_task_gets_one_line_and_exit_2_before_any_run(
    name: str, broken_tasks: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    spec, out = f"{broken_tasks}:{name}", tmp_path / "out"
    assert cli.main(["compare", spec, *FAST, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("andi-bench: error: --task: task ")
    assert _BROKEN[name][1] in err
    assert not out.exists() or not any(out.iterdir())


def test_a_task_file_that_fails_to_import_or_does_not_exist_is_refused(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import no_such_module_here\n")
    assert cli.main(["compare", f"{bad}:Task", *FAST, "--out", str(tmp_path / "o")]) == 2
    assert "importing it raised ModuleNotFoundError" in capsys.readouterr().err
    assert cli.main(["run", "--protocol", "fair", "--task", "nowhere.py:T", *FAST[:2], "--out", str(tmp_path)]) == 2
    assert "task file nowhere.py: no such file" in capsys.readouterr().err


def test_the_good_task_passes_and_runs_with_run_too(broken_tasks: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["run", "--protocol", "fair", "--task", f"{broken_tasks}:Good", *FAST, "--out", str(out), "--no-report"]
    assert cli.main([*args, "--optimizers", "andi,adamw"]) == 0
    assert {r["config"]["task"] for r in _records(out)} == {f"{broken_tasks}:Good"}
    assert [p.name for p in out.glob("manifest-*")] == [
        f"manifest-fair-{_file_safe(f'{broken_tasks}:Good')}-smoke.json"
    ]


def _file_safe(name: str) -> str:
    from andi.bench.execution.files import file_safe

    return file_safe(name)


# ------------------------------------------------------------------------------------------- user optimizers
def _sgd(params: object, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)


@pytest.fixture
def user_sgd() -> Iterator[str]:
    andi.register_optimizer("test-user-sgd", _sgd, default_lr=0.05, label="User SGD")
    yield "test-user-sgd"
    andi.unregister_optimizer("test-user-sgd")


def test_a_user_optimizer_joins_create_optimizer_the_table_and_the_arms(user_sgd: str) -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    opt = andi.create_optimizer(user_sgd, model, weight_decay=0.1)
    assert isinstance(opt, torch.optim.SGD) and opt.param_groups[0]["lr"] == 0.05
    assert opt.param_groups[0]["weight_decay"] == 0.1
    assert user_sgd in andi.list_optimizers()
    assert f"| `{user_sgd}` (User SGD) |" in markdown_table()
    arm = arm_for_optimizer(user_sgd)
    assert (arm.name, arm.optimizer, arm.base_lr, arm.hybrid) == (user_sgd, user_sgd, 0.05, False)


def test_an_optimizer_class_is_a_factory() -> None:
    andi.register_optimizer("test-sgd-class", torch.optim.SGD, default_lr=0.1)
    opt = andi.create_optimizer("test-sgd-class", nn.Linear(3, 2), momentum=0.9)
    assert type(opt) is torch.optim.SGD and opt.defaults["momentum"] == 0.9
    with pytest.raises(OptimizerFactoryError, match="unexpected keyword argument 'nope'"):
        andi.create_optimizer("test-sgd-class", nn.Linear(3, 2), nope=1)


def test_a_hybrid_user_optimizer_gets_the_matrices_and_adamw_the_rest() -> None:
    andi.register_optimizer("test-user-hybrid", _sgd, default_lr=0.01, roles="hybrid")
    try:
        model = nn.Sequential(nn.Embedding(10, 8), nn.Linear(8, 8), nn.Linear(8, 10))
        opt = andi.create_optimizer("test-user-hybrid", model)
        algorithms = {g["algorithm"] for g in opt.param_groups}
        assert algorithms == {"test-user-hybrid", "adamw"}
        assert arm_for_optimizer("test-user-hybrid").hybrid
    finally:
        andi.unregister_optimizer("test-user-hybrid")


def test_a_user_optimizer_joins_a_fair_sweep(user_sgd: str, broken_tasks: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["compare", f"{broken_tasks}:Good", *FAST, "--optimizers", f"andi,adamw,{user_sgd}", "--out", str(out)]
    assert cli.main(args) == 0
    manifest = json.loads(next(out.glob("manifest-*")).read_text())
    assert {a["arm"] for a in manifest["arms"]} == {"andi", "adamw", user_sgd}
    assert user_sgd in {r["config"]["optimizer"] for r in _records(out)}
    assert "User SGD" in (out / "report.md").read_text()


def test_registering_refuses_bad_entries_and_leaves_the_registry_unchanged() -> None:
    before = andi.list_optimizers(available_only=False)
    with pytest.raises(ValueError, match="one of the package's own"):
        andi.register_optimizer("adamw", _sgd, default_lr=1e-3)
    with pytest.raises(ValueError, match="default_lr must be a positive number"):
        andi.register_optimizer("x-sgd", _sgd, default_lr=0.0)
    with pytest.raises(ValueError, match="roles must be one of"):
        andi.register_optimizer("x-sgd", _sgd, default_lr=0.1, roles="matrices")
    with pytest.raises(TypeError, match="factory must be callable"):
        andi.register_optimizer("x-sgd", 3, default_lr=0.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cannot be removed"):
        andi.unregister_optimizer("andi")
    assert andi.list_optimizers(available_only=False) == before


def test_a_factory_that_raises_or_returns_no_optimizer_gets_a_clear_error(tmp_path: Path, capsys) -> None:
    andi.register_optimizer("test-raises", lambda p, lr: 1 / 0, default_lr=0.1)
    andi.register_optimizer("test-not-opt", lambda p, lr: [p], default_lr=0.1)
    try:
        with pytest.raises(OptimizerFactoryError, match=r"'test-raises': its factory .* raised ZeroDivisionError"):
            andi.create_optimizer("test-raises", nn.Linear(2, 2))
        with pytest.raises(OptimizerFactoryError, match=r"returned list, not a torch\.optim\.Optimizer"):
            andi.create_optimizer("test-not-opt", nn.Linear(2, 2))
    finally:
        andi.unregister_optimizer("test-raises")
        andi.unregister_optimizer("test-not-opt")
    opt_file = tmp_path / "opts.py"
    opt_file.write_text(
        "NOT_OPT = {'factory': lambda p, lr: 'nope', 'default_lr': 0.1}\n"
        "HYBRID_NOT_OPT = {**NOT_OPT, 'roles': 'hybrid'}\n"
        "BAD = {'factory': 1}\n"
    )
    out = tmp_path / "out"
    for name in ("NOT_OPT", "HYBRID_NOT_OPT"):
        args = ["compare", f"{EXAMPLE}:TabularTask", *FAST, "--optimizers", f"andi,{opt_file}:{name}"]
        assert cli.main([*args, "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "returned str, not a torch.optim.Optimizer" in err
    assert (
        cli.main(["compare", f"{EXAMPLE}:TabularTask", *FAST, "--optimizers", f"{opt_file}:BAD", "--out", str(out)])
        == 2
    )
    assert "missing ['default_lr']" in capsys.readouterr().err
    assert not out.exists()


# ------------------------------------------------------------------------------------- an installed package
_PACKAGE = {
    "pyproject.toml": """
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "andi-user-plugin"
        version = "0.0.1"

        [project.entry-points."andi.bench.tasks"]
        plugin-tabular = "andi_user_plugin.tasks:TabularTask"

        [project.entry-points."andi.optimizers"]
        plugin-sgd = "andi_user_plugin.opt:PLUGIN_SGD"

        [tool.setuptools]
        packages = ["andi_user_plugin"]
    """,
    "andi_user_plugin/__init__.py": "",
    "andi_user_plugin/opt.py": """
        import torch

        def make(params, lr, weight_decay=0.0):
            return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)

        PLUGIN_SGD = {"factory": make, "default_lr": 0.05, "label": "Plugin SGD"}
    """,
}


def test_an_installed_package_registers_a_task_and_an_optimizer(tmp_path: Path) -> None:
    src, site = tmp_path / "pkg", tmp_path / "site"
    for name, text in _PACKAGE.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text(textwrap.dedent(text))
    shutil.copy(EXAMPLE, src / "andi_user_plugin" / "tasks.py")
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(site)]
    subprocess.run([*pip, str(src)], check=True, capture_output=True, timeout=300)
    env = {**_env(), "PYTHONPATH": os.pathsep.join([str(site), str(ROOT / "src")])}
    listing = subprocess.run(
        [sys.executable, "-m", "andi.bench", "list"], capture_output=True, text=True, timeout=120, env=env
    )
    assert listing.returncode == 0, listing.stderr
    assert "plugin-tabular" in listing.stdout and "andi_user_plugin.tasks:TabularTask" in listing.stdout
    assert "plugin-sgd" in listing.stdout and "Plugin SGD, default lr 0.05" in listing.stdout
    out = tmp_path / "out"
    compare = [*_COMPARE, "plugin-tabular", "--optimizers", "andi,plugin-sgd"]
    proc = subprocess.run(
        [*compare, "--size", "smoke", "--reporting-seeds", "1001,1002,1003", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Verdict on tabular-mlp (`plugin-tabular`)" in proc.stdout and "Plugin SGD" in proc.stdout
    records = _records(out)
    assert {r["config"]["optimizer"] for r in records} == {"andi", "adamw", "plugin-sgd"}
    assert all(r["config"].get("optimizer_source") for r in records if r["config"]["optimizer"] == "plugin-sgd")
    assert all(len(r["config"]["task_source"]) == 64 for r in records)
    source = records[0]["task_info"]["source"]
    assert source["spec"] == "plugin-tabular" and source["file"].endswith("andi_user_plugin/tasks.py")
    sgd = next(r for r in records if r["config"]["optimizer"] == "plugin-sgd")
    assert sgd["optimizer_info"]["source"]["origin"].startswith("andi_user_plugin.opt:PLUGIN_SGD (entry point of ")


def test_a_hugging_face_model_wrapped_as_a_task_runs_through_compare(tmp_path: Path, capsys) -> None:
    pytest.importorskip("transformers")
    spec, out = f"{ROOT / 'examples' / 'hf_task.py'}:TinyGPT2Task", tmp_path / "out"
    args = ["compare", spec, *FAST, "--optimizers", "andi,adamw", "--out", str(out), "--no-report"]
    assert cli.main(args) == 0
    assert "Verdict on tiny-gpt2" in capsys.readouterr().out
    finals = [r["final"]["value"] for r in _records(out) if r["config"]["eval_split"] == "test"]
    assert len(finals) == 6 and all(0 < v < 5 for v in finals)


@pytest.mark.parametrize("module", ["andi.optim.user", "andi.plugins", "andi.bench.execution.files"])
def test_the_docstring_examples_run(module: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
