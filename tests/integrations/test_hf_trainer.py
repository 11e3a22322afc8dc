"""ANDI and a routed optimizer inside Hugging Face ``transformers.Trainer`` (recipe: docs/integrations/hf-trainer.md).

A 2-layer GPT-2 built from a config (nothing is downloaded) learns a deterministic token pattern on the CPU. The
recipes checked here are the two ways of handing an optimizer to the Trainer: ``optimizer_cls_and_kwargs`` (the
Trainer builds ANDI itself) and ``optimizers=(opt, None)`` (a ready ``RoutedOptimizer``), and a Trainer checkpoint
resumed with ``resume_from_checkpoint``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")  # the Trainer needs it

import andi  # noqa: E402

VOCAB = 64
SEQ_LEN = 16
ROUTED = "andi-hybrid" if "andi-hybrid" in andi.list_optimizers() else "muon"
ANDI_KWARGS = {"lr": 0.05}  # a toy problem with a 30-step linear decay: a larger lr than the 0.02 default
ROUTED_KWARGS = {"lr": 0.05, "aux_lr": 1e-2}


class PatternDataset(torch.utils.data.Dataset):
    """Sequence ``i`` counts up from token ``i`` modulo the vocabulary: every next token is predictable."""

    def __len__(self) -> int:
        return VOCAB

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        ids = (i + torch.arange(SEQ_LEN)) % VOCAB
        return {"input_ids": ids, "labels": ids.clone()}


def tiny_gpt2(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    config = transformers.GPT2Config(
        n_layer=2,
        n_head=2,
        n_embd=32,
        vocab_size=VOCAB,
        n_positions=32,
        bos_token_id=0,
        eos_token_id=0,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,  # no dropout: runs that see the same batches must agree
    )
    return transformers.GPT2LMHeadModel(config)


def training_args(out: Path, **overrides) -> transformers.TrainingArguments:
    settings = dict(
        output_dir=str(out),
        max_steps=30,
        per_device_train_batch_size=8,
        logging_steps=1,
        save_strategy="no",
        max_grad_norm=0.0,  # no clipping: ANDI sees the raw gradient (see the docs page)
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=0,
        data_seed=0,
    )
    settings.update(overrides)
    return transformers.TrainingArguments(**settings)


def logged_losses(trainer) -> list[float]:
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


def assert_loss_fell(losses: list[float]) -> None:
    assert len(losses) == 30, losses
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.5 * first, f"loss did not fall: first five {losses[:5]}, last five {losses[-5:]}"


def tensor_state(state_dict: dict) -> dict[tuple[int, str], torch.Tensor]:
    """Every tensor of an optimizer state dict's per-parameter state, keyed by (parameter index, name)."""
    return {
        (index, name): value
        for index, entry in state_dict["state"].items()
        for name, value in entry.items()
        if isinstance(value, torch.Tensor)
    }


class CaptureOptimizerStateAtStart(transformers.TrainerCallback):
    """Copy the optimizer's state dict when training (re)starts, after the Trainer has loaded its checkpoint."""

    def __init__(self) -> None:
        self.state_dict: dict | None = None

    def on_train_begin(self, args, state, control, optimizer=None, **kwargs):
        sd = optimizer.state_dict()
        self.state_dict = {"state": {i: {k: _clone(v) for k, v in s.items()} for i, s in sd["state"].items()}}


def _clone(value):
    return value.detach().clone() if isinstance(value, torch.Tensor) else value


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Tiny models: a second thread only contends on the shared CI machine."""


def test_andi_through_optimizer_cls_and_kwargs_lowers_the_loss(tmp_path):
    model = tiny_gpt2()
    trainer = transformers.Trainer(
        model=model,
        args=training_args(tmp_path),
        train_dataset=PatternDataset(),
        optimizer_cls_and_kwargs=(andi.ANDI, ANDI_KWARGS),
    )
    trainer.train()

    assert type(trainer.optimizer.optimizer) is andi.ANDI  # the Trainer wraps it in accelerate's AcceleratedOptimizer
    assert_loss_fell(logged_losses(trainer))
    buffers = [trainer.optimizer.state[p]["momentum_buffer"] for p in model.parameters()]
    assert len(buffers) == len(list(model.parameters())) and all(b.abs().sum() > 0 for b in buffers)


def test_routed_optimizer_through_optimizers_tuple_lowers_the_loss(tmp_path):
    model = tiny_gpt2()
    opt = andi.create_optimizer(ROUTED, model, **ROUTED_KWARGS)
    trainer = transformers.Trainer(
        model=model, args=training_args(tmp_path), train_dataset=PatternDataset(), optimizers=(opt, None)
    )
    trainer.train()

    assert trainer.optimizer.optimizer is opt
    assert_loss_fell(logged_losses(trainer))
    # Both inner optimizers stepped: Muon's momentum on the hidden matrices, AdamW's moments on the rest.
    inner_state = {name: len(inner.state) for name, inner in opt.inner.items()}
    assert inner_state == {name: sum(len(g["params"]) for g in inner.param_groups) for name, inner in opt.inner.items()}


def _build_trainer(kind: str, out: Path, seed: int, **arg_overrides):
    model = tiny_gpt2(seed)
    args = training_args(out, max_steps=20, save_strategy="steps", save_steps=10, **arg_overrides)
    if kind == "andi":
        return transformers.Trainer(
            model=model, args=args, train_dataset=PatternDataset(), optimizer_cls_and_kwargs=(andi.ANDI, ANDI_KWARGS)
        )
    opt = andi.create_optimizer(ROUTED, model, **ROUTED_KWARGS)
    return transformers.Trainer(model=model, args=args, train_dataset=PatternDataset(), optimizers=(opt, None))


@pytest.mark.parametrize("kind", ["andi", "routed"])
def test_resume_from_checkpoint_restores_optimizer_state_and_matches_uninterrupted_run(tmp_path, kind):
    uninterrupted = _build_trainer(kind, tmp_path / "a", seed=0)
    uninterrupted.train()
    final = {n: p.detach().clone() for n, p in uninterrupted.model.named_parameters()}
    checkpoint = tmp_path / "a" / "checkpoint-10"
    saved = tensor_state(torch.load(checkpoint / "optimizer.pt", weights_only=True))

    # A different initialisation: everything the resumed run needs must come from the checkpoint.
    capture = CaptureOptimizerStateAtStart()
    resumed = _build_trainer(kind, tmp_path / "b", seed=1)
    resumed.add_callback(capture)
    resumed.train(resume_from_checkpoint=str(checkpoint))

    loaded = tensor_state(capture.state_dict)
    expected_names = {"momentum_buffer"} if kind == "andi" else {"momentum_buffer", "exp_avg", "exp_avg_sq", "step"}
    assert {name for _, name in saved} == expected_names
    assert loaded.keys() == saved.keys()
    for key, value in saved.items():
        assert torch.equal(loaded[key], value), f"optimizer state {key} differs from the checkpoint's"
    assert any(v.abs().sum() > 0 for (_, name), v in saved.items() if name == "momentum_buffer")

    assert resumed.state.global_step == 20
    # The resumed Trainer restored the log of steps 1-10 and then took steps 11-20 with the uninterrupted run's losses.
    assert logged_losses(resumed) == pytest.approx(logged_losses(uninterrupted), rel=1e-5)
    for name, p in resumed.model.named_parameters():
        torch.testing.assert_close(p, final[name], rtol=0, atol=1e-6, msg=f"{name} differs from the uninterrupted run")


def test_gradient_accumulation_gives_andi_the_same_step_as_one_large_batch(tmp_path):
    """The Trainer averages over accumulated micro-batches, so ANDI's step does not grow with the accumulation count."""

    def one_step(out: Path, batch: int, accumulation: int) -> dict[str, torch.Tensor]:
        model = tiny_gpt2()
        args = training_args(
            out, max_steps=1, per_device_train_batch_size=batch, gradient_accumulation_steps=accumulation
        )
        trainer = transformers.Trainer(
            model=model, args=args, train_dataset=PatternDataset(), optimizer_cls_and_kwargs=(andi.ANDI, ANDI_KWARGS)
        )
        trainer.train()
        return {n: p.detach().clone() for n, p in model.named_parameters()}

    start = {n: p.detach().clone() for n, p in tiny_gpt2().named_parameters()}
    large = one_step(tmp_path / "large", batch=8, accumulation=1)
    accumulated = one_step(tmp_path / "accumulated", batch=4, accumulation=2)
    for name, p in large.items():
        assert not torch.equal(p, start[name])
        torch.testing.assert_close(accumulated[name], p, rtol=1e-4, atol=1e-6)


def summed_token_loss(outputs, labels, num_items_in_batch=None):
    """Cross-entropy summed over the batch's 8 x 15 predicted tokens: the gradient of the mean, 120 times larger."""
    logits = outputs.logits[:, :-1].flatten(0, 1)
    return torch.nn.functional.cross_entropy(logits, labels[:, 1:].flatten(), reduction="sum")


def first_andi_update(out: Path, max_grad_norm: float, compute_loss_func=None) -> torch.Tensor:
    model = tiny_gpt2()
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    trainer = transformers.Trainer(
        model=model,
        args=training_args(out, max_steps=1, max_grad_norm=max_grad_norm),
        train_dataset=PatternDataset(),
        optimizer_cls_and_kwargs=(andi.ANDI, ANDI_KWARGS),
        compute_loss_func=compute_loss_func,
    )
    trainer.train()
    return torch.cat([p.detach().flatten() for p in model.parameters()]) - before


def test_default_clipping_changes_andis_step_only_when_gradients_are_large(tmp_path):
    """ANDI's step per tensor scales with sqrt(|G|^2 + 1): ``max_grad_norm=1.0`` (the Trainer's default) leaves it
    almost unchanged when every tensor's gradient norm is well below 1 (the mean loss of this model), and shrinks it
    several times when the gradients are large (the same loss summed over tokens)."""
    mean_unclipped = first_andi_update(tmp_path / "mean-off", max_grad_norm=0.0)
    mean_clipped = first_andi_update(tmp_path / "mean-on", max_grad_norm=1.0)
    sum_unclipped = first_andi_update(tmp_path / "sum-off", max_grad_norm=0.0, compute_loss_func=summed_token_loss)
    sum_clipped = first_andi_update(tmp_path / "sum-on", max_grad_norm=1.0, compute_loss_func=summed_token_loss)

    torch.testing.assert_close(mean_clipped.norm(), mean_unclipped.norm(), rtol=0.02, atol=0)
    assert sum_unclipped.norm() > 5 * sum_clipped.norm()
    # Clipped, the summed loss gives nearly the mean loss's step again: clipping undoes the 120x scale.
    torch.testing.assert_close(sum_clipped.norm(), mean_unclipped.norm(), rtol=0.1, atol=0)
