"""Every task builds, trains 3 steps with a finite loss, evaluates; paper models have the spec's sizes."""

from __future__ import annotations

import fnmatch
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from andi.bench.tasks import TASKS, data, get_task
from andi.bench.tasks.char_gpt import CharGPT
from andi.bench.tasks.cifar_projection_mlp import ProjectionMLP, gaussian_projection
from andi.bench.tasks.cifar_resnet9 import ResNet9, crop_flip
from andi.bench.tasks.saddle import DeepAutoencoder

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
CONTRACT_TASKS = ("saddle", "cifar", "gpt", "cifar-proj", "rosenbrock", "quadratic", "rotated-quadratic")
CLASSIFICATION = {"cifar", "cifar-proj"}


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registry_has_the_contract_tasks() -> None:
    assert set(CONTRACT_TASKS) <= set(TASKS)
    with pytest.raises(ValueError, match="unknown task 'mnist'"):
        get_task("mnist")
    with pytest.raises(ValueError, match="unknown size"):
        get_task("saddle", "huge")


def test_paper_models_match_the_spec_parameter_counts() -> None:
    # docs/design/protocol.md: 437,664 / 6,573,130 / 818,176 (vocab 65); cifar-proj: 256·256·2 + 256·10 + biases.
    assert n_params(DeepAutoencoder()) == 437_664
    assert n_params(ResNet9()) == 6_573_130
    assert n_params(CharGPT(vocab_size=65)) == 818_176
    assert n_params(ProjectionMLP()) == 2 * (256 * 256 + 256) + 256 * 10 + 10


@pytest.mark.parametrize("name", ["saddle", "cifar", "cifar-proj"])
def test_full_size_tasks_build_the_paper_models(name: str, synthetic_data_root: Path) -> None:
    expected = {"saddle": 437_664, "cifar": 6_573_130, "cifar-proj": 134_154}[name]
    assert n_params(get_task(name, "full", synthetic_data_root).build_model(0)) == expected


def test_gpt_quirks() -> None:
    model = CharGPT(vocab_size=65)
    block = model.blocks[0]
    assert block[1].in_proj_weight.shape == (384, 128) and block[1].in_proj_bias is not None
    assert model.head.bias is None and model.head.weight.data_ptr() != model.tok_emb.weight.data_ptr()
    # causal: changing a later token leaves earlier logits unchanged
    idx = torch.randint(0, 65, (2, 64))
    changed = idx.clone()
    changed[:, 40] = (changed[:, 40] + 1) % 65
    with torch.no_grad():
        a, b = model(idx), model(changed)
    torch.testing.assert_close(a[:, :40], b[:, :40])
    assert not torch.allclose(a[:, 40:], b[:, 40:])
    # one LayerNorm evaluated three times into the attention (q, k, v are its outputs)
    calls = []
    block[0].register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        model(idx)
    assert len(calls) == 3


@pytest.mark.parametrize("name", sorted(TASKS))
def test_each_task_trains_three_steps_and_evaluates(name: str, synthetic_data_root: Path) -> None:
    task = get_task(name, "smoke", synthetic_data_root)
    model = task.build_model(seed=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batches = task.train_batches(seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for _ in range(3):
        loss = task.loss(model, next(batches))
        assert loss.ndim == 0 and math.isfinite(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    for split in task.splits:  # ("val", "test") in the fair split mode; gpt-v7 has its one "val"
        metrics = task.evaluate(model, split)
        assert task.primary_metric in metrics
        assert all(math.isfinite(v) for v in metrics.values())
        if name in CLASSIFICATION:
            assert 0.0 <= metrics["accuracy"] <= 1.0 and "loss" in metrics
    assert model.training  # evaluate restores the mode
    # every role override names an existing parameter (a typo would silently do nothing)
    names = [n for n, _ in model.named_parameters()]
    for pattern in task.role_overrides:
        assert fnmatch.filter(names, pattern), f"{name}: override {pattern!r} matches no parameter"


@pytest.mark.parametrize("name", ["saddle", "cifar", "gpt", "cifar-proj", "quadratic-noisy"])
def test_data_stream_depends_only_on_its_seed(name: str, synthetic_data_root: Path) -> None:
    task = get_task(name, "smoke", synthetic_data_root)
    a = next(task.train_batches(seed=5))
    stream = task.train_batches(seed=5)
    b, c = next(stream), next(stream)
    d = next(get_task(name, "smoke", synthetic_data_root).train_batches(seed=6))
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    assert any(not torch.equal(x, y) for x, y in zip(b, c))
    assert any(not torch.equal(x, y) for x, y in zip(b, d))


def test_data_is_loaded_when_the_stream_is_created(synthetic_data_root: Path, monkeypatch) -> None:
    task = get_task("gpt", "smoke", synthetic_data_root)
    calls = []
    original = data.load_tinyshakespeare
    monkeypatch.setattr(data, "load_tinyshakespeare", lambda *a, **k: calls.append(1) or original(*a, **k))
    stream = task.train_batches(seed=0)
    assert calls == [1]  # before the first batch is requested: the runner's clock never includes loading
    next(stream)
    assert calls == [1]
    with pytest.raises(ValueError, match="batch_size > 0"):
        get_task("saddle", "smoke", synthetic_data_root).train_batches(0, batch_size=-1)


def test_model_init_depends_only_on_its_seed(synthetic_data_root: Path) -> None:
    task = get_task("saddle", "smoke", synthetic_data_root)
    torch.manual_seed(123)
    a = task.build_model(1)
    torch.manual_seed(456)
    b = task.build_model(1)
    c = task.build_model(2)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.encoder[0].weight, c.encoder[0].weight)


def test_saddle_fair_and_paper_splits(synthetic_data_root: Path) -> None:
    fair = get_task("saddle", "full", synthetic_data_root)
    images, _ = data.load_fashion_mnist(synthetic_data_root)
    n_val = len(images) // 12  # 5,000 of 60,000
    cpu = torch.device("cpu")
    (train,), (val,) = fair.split_tensors("train", cpu), fair.split_tensors("val", cpu)
    assert len(train) + len(val) == len(images) and len(val) == n_val
    assert torch.equal(val, torch.from_numpy(images[-n_val:].reshape(n_val, -1).copy()))
    paper = get_task("saddle", "full", synthetic_data_root, split_mode="paper")
    assert len(paper.split_tensors("train", cpu)[0]) == len(images)
    with pytest.raises(ValueError, match="no split 'val'"):
        paper.evaluate(paper.build_model(0), "val")
    # paper semantics: shuffled epochs with a short last batch (drop_last=False)
    sizes = [len(b[0]) for b in _take(paper.train_batches(0, batch_size=128), 5)]
    assert sizes == [128, 128, 128, 128, len(images) - 4 * 128]


def _take(iterator, n):
    return [next(iterator) for _ in range(n)]


def test_cifar_splits_and_augmentation(synthetic_data_root: Path) -> None:
    task = get_task("cifar", "full", synthetic_data_root)
    images, labels = data.load_cifar10(synthetic_data_root)
    cpu = torch.device("cpu")
    tr, va = task.split_tensors("train", cpu), task.split_tensors("val", cpu)
    assert len(tr[0]) == len(images) - len(images) // 10 and len(va[0]) == len(images) // 10
    assert torch.equal(va[1], torch.tensor(labels[-len(images) // 10 :]))
    paper = get_task("cifar", "full", synthetic_data_root, split_mode="paper")
    assert len(paper.split_tensors("train", cpu)[0]) == len(images)
    x, y = next(task.train_batches(0, batch_size=16))
    assert x.shape == (16, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    # a padded pixel (0) normalizes to -mean/std
    zero = (0.0 - torch.tensor([0.49, 0.48, 0.44])) / torch.tensor([0.2, 0.19, 0.2])
    assert torch.isclose(x, zero.view(1, 3, 1, 1).expand_as(x)).any()


def test_crop_flip_is_a_shifted_possibly_mirrored_window() -> None:
    g = torch.Generator().manual_seed(0)
    imgs = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    out = crop_flip(imgs, g)
    assert out.shape == imgs.shape and out.dtype == torch.uint8
    padded = F.pad(imgs, (4, 4, 4, 4))
    flips = 0
    for i in range(len(imgs)):
        windows = [(padded[i, :, dy : dy + 32, dx : dx + 32], f) for dy in range(9) for dx in range(9) for f in (0, 1)]
        matches = [f for w, f in windows if torch.equal(out[i], w.flip(-1) if f else w)]
        assert matches, f"image {i} is not a crop of its padded source"
        flips += matches[0]
    assert 10 < flips < 54  # p = 0.5 over 64 images
    assert torch.equal(crop_flip(imgs, torch.Generator().manual_seed(0)), out)


def test_gpt_splits_and_window_evaluation(synthetic_data_root: Path) -> None:
    task = get_task("gpt", "smoke", synthetic_data_root)
    text = data.load_tinyshakespeare(synthetic_data_root)
    assert task.vocab == "".join(sorted(set(text)))
    n = len(text)
    cpu = torch.device("cpu")
    (val,) = task.split_tensors("val", cpu)
    assert len(val) == min(int(0.95 * n) - int(0.9 * n), task.spec.subset["val"])
    assert task.vocab[val[0]] == text[int(0.9 * n)]
    model = task.build_model(0)
    block = task.block_size
    k = (len(val) - 1) // block
    with torch.no_grad():
        logits = model(val[: k * block].view(k, block))
        expected = F.cross_entropy(logits.reshape(-1, logits.size(-1)), val[1 : k * block + 1]).item()
    assert task.evaluate(model, "val")["loss"] == pytest.approx(expected, rel=1e-5)
    x, y = next(task.train_batches(0))
    assert x.shape == (8, block) and torch.equal(x[:, 1:], y[:, :-1])
    paper = get_task("gpt", "full", synthetic_data_root, split_mode="paper")
    assert len(paper.split_tensors("train", cpu)[0]) == n and paper.splits == ()


def test_cifar_projection_is_seeded_and_recorded(synthetic_data_root: Path) -> None:
    p = gaussian_projection(0)
    assert p.shape == (256, 3072) and torch.equal(p, gaussian_projection(0))
    assert abs(p.std().item() - 3072**-0.5) < 1e-4 * 3 and not torch.equal(p, gaussian_projection(1))
    task = get_task("cifar-proj", "smoke", synthetic_data_root, projection_seed=3)
    assert task.describe()["projection_seed"] == 3
    x, _ = next(task.train_batches(0))
    assert x.shape == (32, 256) and 0.3 < x.std().item() < 3.0


def test_toy_objectives() -> None:
    rosen = get_task("rosenbrock", "smoke")
    m = rosen.build_model(0)
    assert m().item() == pytest.approx((1 + 1.5) ** 2 + 100 * (2.0 - 2.25) ** 2)
    with torch.no_grad():
        m.xy.fill_(1.0)
    assert rosen.evaluate(m, "test") == {"loss": 0.0, "distance": 0.0, "solved": 1.0}

    quad = get_task("quadratic", "smoke")
    model = quad.build_model(0)
    assert quad.evaluate(model, "val")["relative"] == pytest.approx(1.0)
    d_r, _, target = quad.problem()
    assert d_r.min() >= 10**-1.5 and d_r.max() <= 1 and target.shape == (64, 64)
    with torch.no_grad():
        model.weight.copy_(target)
    assert quad.evaluate(model, "val")["loss"] == pytest.approx(0.0, abs=1e-8)

    rotated = get_task("rotated-quadratic", "smoke")
    a, _, _ = rotated.problem()
    torch.testing.assert_close(a, a.T)
    torch.testing.assert_close(torch.linalg.eigvalsh(a), torch.sort(d_r).values)  # same spectrum, rotated
    assert (a - torch.diag(torch.diagonal(a))).abs().max() > 1e-3


def test_noisy_quadratic_adds_noise_to_the_gradient_only() -> None:
    clean, noisy = get_task("quadratic", "smoke"), get_task("quadratic-noisy", "smoke")
    m_clean, m_noisy = clean.build_model(0), noisy.build_model(0)
    (noise,) = next(noisy.train_batches(0))
    f_clean = clean.loss(m_clean, next(clean.train_batches(0)))
    f_noisy = noisy.loss(m_noisy, (noise,))
    assert f_noisy.item() == f_clean.item()
    f_clean.backward()
    f_noisy.backward()
    torch.testing.assert_close(m_noisy.weight.grad - m_clean.weight.grad, noise)
    assert noise.std().item() == pytest.approx(0.01, rel=0.1)


@pytest.mark.skipif(not SHARED.is_dir(), reason="no shared/data checkout next to the repository")
def test_gpt_full_size_on_the_real_text_has_the_paper_vocab() -> None:
    task = get_task("gpt", "full", SHARED)
    assert len(task.vocab) == 65 and n_params(task.build_model(0)) == 818_176
