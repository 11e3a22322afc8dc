"""The v7 replay: the runner on ``gpt-v7`` equals a transcription of the author's ``train_engine`` loop (written here
from ``experiments/ANDI.py`` @5cb1d03) — same windows, same evaluations, same schedule, same score — and the two
protocols of the paper-size GPT issue declare exactly what it asks for."""

from __future__ import annotations

import json
import math
import random
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import andi
from andi.bench import cli
from andi.bench.execution.runner import RunConfig, run
from andi.bench.protocols import REPLAY_V7, STUDY_GPT_FULL, get_protocol
from andi.bench.protocols.replay import V7_REPRODUCED_WITHIN
from andi.bench.protocols.study import D_MUON_GPT_CENTRE
from andi.bench.tasks import get_task
from andi.bench.tasks.char_gpt import CharGPT

pytestmark = pytest.mark.usefixtures("one_thread")

STEPS, BATCH, EVERY, SEED = 24, 8, 5, 42


def _author_wsd(warmup: int, total: int):
    cooldown = int(total * 0.2)
    stable = total - warmup - cooldown

    def f(s: int) -> float:
        if s < warmup:
            return float(s) / float(max(1, warmup))
        if s < warmup + stable:
            return 1.0
        return max(0.0, 1.0 - (s - (warmup + stable)) / float(max(1, cooldown)))

    return f


def _author_cosine(warmup: int, total: int):
    def f(s: int) -> float:
        if s < warmup:
            return float(s) / float(max(1, warmup))
        progress = float(s - warmup) / float(max(1, total - warmup))
        return 0.01 + 0.5 * (1.0 - 0.01) * (1.0 + math.cos(math.pi * progress))

    return f


def _author_loop(
    text_codes: torch.Tensor, vocab: int, model_kw: dict, optimizer: str, lr: float
) -> tuple[list[float], float]:
    """``train_engine`` for one seed, as the script writes it (global RNG, ``step % EVERY`` evaluations)."""
    n = int(0.9 * len(text_codes))
    train, val = text_codes[:n][:20_000], text_codes[n:]
    block = model_kw["block_size"]
    random.seed(SEED)
    np.random.seed(SEED)
    torch.manual_seed(SEED)
    model = CharGPT(vocab, **model_kw)
    groups = andi.weight_decay_groups(model, 0.01)
    if optimizer == "adamw":
        opt = torch.optim.AdamW(groups, lr=lr)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, _author_cosine(int(STEPS * 0.1), STEPS))
    else:
        opt = andi.ANDI(groups, lr=lr, compat="v7")
        sched = torch.optim.lr_scheduler.LambdaLR(opt, _author_wsd(int(STEPS * 0.1), STEPS))

    def loss_of(data: torch.Tensor) -> torch.Tensor:
        ix = torch.randint(len(data) - block, (BATCH,))
        x = torch.stack([data[i : i + block] for i in ix])
        y = torch.stack([data[i + 1 : i + block + 1] for i in ix])
        logits = model(x)
        return F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))

    evals = []
    for step in range(STEPS):
        loss = loss_of(train)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % EVERY == 0:
            model.eval()
            with torch.no_grad():
                evals.append(float(np.mean([loss_of(val).item() for _ in range(50)])))
            model.train()
    return evals, float(np.mean(evals[-5:]))


@pytest.mark.parametrize(("optimizer", "lr"), [("andi-v7", 0.09), ("adamw", 1e-3)])
def test_runner_on_gpt_v7_is_the_scripts_loop(synthetic_data_root, optimizer, lr):
    task = get_task("gpt-v7", "smoke", synthetic_data_root)
    config = RunConfig(
        task="gpt-v7",
        size="smoke",
        optimizer=optimizer,
        lr=lr,
        steps=STEPS,
        batch_size=BATCH,
        init_seed=SEED,
        data_seed=SEED,
        schedule="cosine-v7" if optimizer == "adamw" else "wsd-v7",
        warmup_frac=0.1,
        decay_frac=0.2,
        weight_decay=0.01,
        roles="all",
        eval_every=EVERY,
        eval_split="val",
        decay_rule="v7",
        eval_schedule="v7",
    )
    record = run(config, data_root=synthetic_data_root)
    model_kw = dict(task.spec.model)
    evals, score = _author_loop(task._load(), len(task.vocab), model_kw, optimizer, lr)
    assert record["status"] == "ok"
    assert record["eval"]["steps"] == [s + 1 for s in range(STEPS) if s % EVERY == 0]
    assert record["eval"]["loss"] == evals
    assert record["final"]["value"] == score
    assert record["final"]["rule"] == "mean of the last 5 evaluations"


def test_v7_fields_leave_earlier_run_keys_unchanged():
    """``decay_rule`` and ``eval_schedule`` at their defaults are not part of a config's dict, so every key of a
    record written before they existed is the same."""
    config = RunConfig(task="gpt", size="cpu", optimizer="andi", lr=0.02)
    assert "decay_rule" not in config.to_dict() and "eval_schedule" not in config.to_dict()
    assert config.key() == "715a2c454711e667a4ade155806c695973f7b090a44eb58434cc3df7fc251be2"  # before the fields
    v7 = RunConfig(task="gpt-v7", decay_rule="v7", eval_schedule="v7")
    assert RunConfig.from_dict(v7.to_dict()) == v7


def test_replay_v7_declares_the_authors_setting():
    p = get_protocol("replay-v7")
    assert p is REPLAY_V7 and p.default_size == "full" and p.tasks == ("gpt-v7",)
    assert p.seeds == (42, 1337) and p.andi_grid == (0.09,)
    assert set(p.arms) == {"andi-v7", "d-muon-v7", "adamw"}
    configs = {
        a: p.config(
            a,
            "gpt-v7",
            p.andi_grid[0] if a == "andi-v7" else p.fixed_lr(a, "gpt-v7"),
            42,
            size="full",
            steps=2500,
            record_every=50,
        )
        for a in p.arms
    }
    assert {a: c.lr for a, c in configs.items()} == {"andi-v7": 0.09, "d-muon-v7": 0.02, "adamw": 1e-3}
    schedules = {a: c.schedule for a, c in configs.items()}
    assert schedules == {"andi-v7": "wsd-v7", "d-muon-v7": "wsd-v7", "adamw": "cosine-v7"}
    for c in configs.values():
        assert (c.steps, c.batch_size, c.weight_decay, c.decay_rule, c.eval_schedule) == (2500, 128, 0.01, "v7", "v7")
        assert (c.eval_every, c.eval_split, c.warmup_frac, c.decay_frac) == (50, "val", 0.1, 0.2)
    assert dict(p.author_scores) == {"andi-v7": 1.5351, "d-muon-v7": 1.5545, "adamw": 1.5770}


def test_study_gpt_full_declares_the_fair_version():
    p = get_protocol("study-gpt-full")
    assert p is STUDY_GPT_FULL and p.default_size == "full" and p.tasks == ("gpt",)
    arms = {a.name: a for a in p.arms}
    assert set(arms) == set(p.run_arms()) == {"andi", "d-muon", "adamw"}
    assert (arms["andi"].optimizer, arms["d-muon"].optimizer, arms["adamw"].optimizer) == ("andi-v7", "d-muon", "adamw")
    grids = {n: p.grid(a, "gpt") for n, a in arms.items()}
    for name, centre in (("andi", 0.09), ("adamw", 1e-3), ("d-muon", D_MUON_GPT_CENTRE)):
        assert grids[name] == pytest.approx((centre / 2, centre, centre * 2), rel=1e-12)
    assert p.factor == 2 and p.edge_extension >= 1 and p.edge_extension_rounds >= 1
    assert p.tuning_seeds == (0,) and len(p.reporting_seeds) == 5 and not set(p.tuning_seeds) & set(p.reporting_seeds)
    for name, arm in arms.items():
        config = p.config(arm, "gpt", 0.01, 1001, split="test", size="full")
        assert (config.weight_decay, config.decay_rule, config.size) == (0.01, "v7", "full")
        assert config.schedule == ("cosine-v7" if name == "adamw" else "wsd-v7")
        assert (config.warmup_frac, config.decay_frac, config.eval_split) == (0.1, 0.2, "test")
        assert config.steps is None and config.batch_size is None  # the task's full size: 2500 steps, batch 128
    task_cls = get_task("gpt", "full").__class__
    assert (task_cls.sizes["full"].steps, task_cls.sizes["full"].batch_size) == (2500, 128)
    assert dict(task_cls.sizes["full"].model) == {"block_size": 64, "n_embd": 128, "n_head": 4, "n_layer": 4}


def test_the_replay_page_sets_each_arms_two_seed_score_beside_the_authors(tmp_path: Path) -> None:
    """The v7 replay's report reads the script's score (not the last training loss) from every record, averages
    the two seeds and sets the author's number beside it, "reproduced" within the declared tolerance."""
    archive = Path(__file__).resolve().parents[2] / "docs" / "results" / "replay-v7" / "records.tar.xz"
    scores: dict[str, list[float]] = {}
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if member.name.lstrip("./").startswith("manifest-"):
                continue
            record = json.load(tar.extractfile(member))
            scores.setdefault(record["config"]["optimizer"], []).append(record["final"]["value"])
    author = dict(REPLAY_V7.author_scores)
    out = tmp_path / "report.md"
    assert cli.main(["report", str(archive), "--out", str(out), "--no-figures"]) == 0
    lines = out.read_text().splitlines()
    header = next(i for i, line in enumerate(lines) if "| the author's |" in line)
    table = lines[header + 2 : lines.index("", header)]
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in table}
    assert len(rows) == 3
    labels = dict(REPLAY_V7.labels)
    for optimizer, values in scores.items():
        assert len(values) == 2
        row = rows[labels[optimizer]]
        ours = sum(values) / 2
        assert float(row[4]) == pytest.approx(ours, abs=5e-5)
        assert float(row[5]) == author[optimizer]
        assert float(row[6].replace("−", "-")) == pytest.approx(ours - author[optimizer], abs=5e-5)
        assert row[7] == ("yes" if abs(ours - author[optimizer]) <= V7_REPRODUCED_WITHIN else "no")
