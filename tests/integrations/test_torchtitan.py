"""ANDI in torchtitan's ``OptimizersContainer`` (recipe: docs/integrations/torchtitan.md).

torchtitan builds its optimizers from ``OptimizersContainer.Config`` (regex-matched parameter groups, each naming an
optimizer) and checkpoints them through the container's flat, FQN-keyed ``state_dict``. The recipe subclasses the
container so that ``optimizer_name="ANDI"`` resolves to :class:`andi.ANDI`. Checked here on one CPU process, without
``torch.distributed`` initialised: the container and its LR schedulers train, the state dict round-trips exactly,
and the zero-gradient step the container takes to materialise state before the first checkpoint leaves ANDI's
trajectory unchanged. torchtitan's full ``Trainer`` (model registry, tokenizer, datasets, distributed launch) is not
run here.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import pytest
import torch

titan_optimizer = pytest.importorskip("torchtitan.components.optimizer")

import andi  # noqa: E402

OptimizersContainer = titan_optimizer.OptimizersContainer
ParamGroupConfig = titan_optimizer.ParamGroupConfig
LRSchedulersContainer = titan_optimizer.LRSchedulersContainer


class ANDIOptimizersContainer(OptimizersContainer):
    """torchtitan's container, with ``optimizer_name="ANDI"`` available next to its built-in names."""

    @dataclass(kw_only=True, slots=True)
    class Config(OptimizersContainer.Config):
        pass

    @staticmethod
    def _resolve_optimizer_factory(name: str):
        if name == "ANDI":
            return andi.ANDI
        return OptimizersContainer._resolve_optimizer_factory(name)


def optimizer_config(embedding_to_adamw: bool = True) -> ANDIOptimizersContainer.Config:
    """Embedding to AdamW (when asked), every other parameter to ANDI: patterns are tried in order, first match wins."""
    adamw = ParamGroupConfig(
        pattern=r"^tok_embeddings\.", optimizer_name="AdamW", optimizer_kwargs={"lr": 3e-3, "weight_decay": 0.0}
    )
    rest = ParamGroupConfig(pattern=r".*", optimizer_name="ANDI", optimizer_kwargs={"lr": 0.02})
    return ANDIOptimizersContainer.Config(
        implementation="foreach",  # the default, "fused", would also set fused=True in every ANDI group
        param_groups=[adamw, rest] if embedding_to_adamw else [rest],
    )


class TinyLM(torch.nn.Module):
    def __init__(self, vocab: int = 32, dim: int = 32) -> None:
        super().__init__()
        self.tok_embeddings = torch.nn.Embedding(vocab, dim)
        self.hidden = torch.nn.Linear(dim, dim)
        self.norm = torch.nn.LayerNorm(dim)
        self.output = torch.nn.Linear(dim, vocab, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.tok_embeddings(tokens)
        return self.output(self.norm(h + torch.tanh(self.hidden(h))))


def seeded_model(seed: int) -> TinyLM:
    torch.manual_seed(seed)
    return TinyLM()


TOKENS = torch.arange(64) % 32
TARGETS = (TOKENS * 5 + 3) % 32  # a fixed token-to-token map


def train(model: TinyLM, optimizers, schedulers, steps: int) -> list[float]:
    losses = []
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(TOKENS), TARGETS)
        loss.backward()
        optimizers.step()
        schedulers.step()
        optimizers.zero_grad()
        losses.append(loss.item())
    return losses


def build(model: TinyLM, embedding_to_adamw: bool = True):
    optimizers = optimizer_config(embedding_to_adamw).build(model_parts=[model])
    schedulers = LRSchedulersContainer.Config(warmup_steps=5).build(optimizers=optimizers, training_steps=40)
    return optimizers, schedulers


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Tiny models: a second thread only contends on the shared CI machine."""


def test_container_routes_by_pattern_and_trains_with_its_schedulers():
    model = seeded_model(0)
    optimizers, schedulers = build(model)

    by_type = {type(o).__name__: o for o in optimizers}
    assert sorted(by_type) == ["ANDI", "AdamW"]
    andi_params = {id(p) for g in by_type["ANDI"].param_groups for p in g["params"]}
    assert andi_params == {id(p) for n, p in model.named_parameters() if not n.startswith("tok_embeddings")}
    assert all(g["foreach"] and not g["fused"] for g in by_type["ANDI"].param_groups)

    losses = train(model, optimizers, schedulers, steps=30)
    assert sum(losses[-5:]) / 5 < 0.3 * sum(losses[:5]) / 5, losses
    assert all(len(by_type["ANDI"].state[p]) == 1 for g in by_type["ANDI"].param_groups for p in g["params"])


def test_container_state_dict_round_trip_resumes_exactly():
    model = seeded_model(0)
    optimizers, schedulers = build(model)
    train(model, optimizers, schedulers, steps=6)
    saved_model = copy.deepcopy(model.state_dict())
    saved_optimizers = copy.deepcopy(optimizers.state_dict())
    saved_schedulers = copy.deepcopy(schedulers.state_dict())
    expected_losses = train(model, optimizers, schedulers, steps=6)

    momentum_keys = sorted(k for k in saved_optimizers if k.endswith(".momentum_buffer"))
    assert momentum_keys == [
        f"state.{n}.momentum_buffer"
        for n in ("hidden.bias", "hidden.weight", "norm.bias", "norm.weight", "output.weight")
    ]

    resumed = seeded_model(1)
    resumed.load_state_dict(saved_model)
    resumed_optimizers, resumed_schedulers = build(resumed)
    resumed_optimizers.load_state_dict(saved_optimizers)
    resumed_schedulers.load_state_dict(saved_schedulers)
    restored = resumed_optimizers.state_dict()
    for key in momentum_keys:
        assert torch.equal(restored[key], saved_optimizers[key]), key

    assert train(resumed, resumed_optimizers, resumed_schedulers, steps=6) == expected_losses
    for (name, p), q in zip(resumed.named_parameters(), model.parameters()):
        assert torch.equal(p, q), f"{name} differs from the uninterrupted run"


def test_state_dict_before_the_first_step_leaves_andis_training_unchanged():
    """``state_dict()`` on a fresh container takes a zero-gradient, lr=0 step to create ANDI's buffers; with
    ``compat="paper"`` (M_0 = 0) the run that follows is the same as without it. (AdamW is left out: the same step
    advances its step counter, which shifts its bias correction; that is torchtitan's behaviour, not ANDI's.)"""
    plain = seeded_model(0)
    plain_losses = train(plain, *build(plain, embedding_to_adamw=False), steps=5)

    checkpointed = seeded_model(0)
    optimizers, schedulers = build(checkpointed, embedding_to_adamw=False)
    at_step_zero = optimizers.state_dict()  # what torchtitan's checkpointer does before saving at step 0
    assert all(torch.count_nonzero(v) == 0 for k, v in at_step_zero.items() if k.endswith(".momentum_buffer")) and any(
        k.endswith(".momentum_buffer") for k in at_step_zero
    )
    assert train(checkpointed, optimizers, schedulers, steps=5) == plain_losses
    for p, q in zip(checkpointed.parameters(), plain.parameters()):
        assert torch.equal(p, q)
