"""Parameter roles on the paper's three models (architectures per docs/design/protocol.md) and on the tricky cases."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from andi.routing import ROLES, param_groups, param_roles


# ------------------------------------------------------------ the paper's models (docs/design/protocol.md)
class SaddleAutoencoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Linear(784, 256), nn.Tanh(), nn.Linear(256, 64), nn.Tanh(), nn.Linear(64, 16), nn.Tanh()
        )
        self.decoder = nn.Sequential(
            nn.Linear(16, 64), nn.Tanh(), nn.Linear(64, 256), nn.Tanh(), nn.Linear(256, 784), nn.Sigmoid()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x.view(x.size(0), -1)))


def _cb(c_in: int, c_out: int, pool: bool = False) -> nn.Sequential:
    layers = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class ResNet9(nn.Module):
    """The paper's "ResNet-9": a plain 9-layer conv net (no residual connections)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.net = nn.Sequential(
            _cb(3, 64),
            _cb(64, 128, True),
            _cb(128, 128),
            _cb(128, 128),
            _cb(128, 256, True),
            _cb(256, 512, True),
            _cb(512, 512),
            _cb(512, 512),
            nn.MaxPool2d(4),
            nn.Flatten(),
            nn.Linear(512, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class NanoGPT(nn.Module):
    def __init__(
        self, vocab_size: int = 65, block_size: int = 64, n_embd: int = 128, n_head: int = 4, n_layer: int = 4
    ) -> None:
        super().__init__()
        self.tok_emb = nn.Embedding(vocab_size, n_embd)
        self.pos_emb = nn.Embedding(block_size, n_embd)
        self.blocks = nn.Sequential(
            *[
                nn.Sequential(
                    nn.LayerNorm(n_embd),
                    nn.MultiheadAttention(n_embd, n_head, batch_first=True),
                    nn.LayerNorm(n_embd),
                    nn.Sequential(nn.Linear(n_embd, 4 * n_embd), nn.GELU(), nn.Linear(4 * n_embd, n_embd)),
                )
                for _ in range(n_layer)
            ]
        )
        self.ln_f = nn.LayerNorm(n_embd)
        self.head = nn.Linear(n_embd, vocab_size, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        T = idx.shape[1]
        x = self.tok_emb(idx) + self.pos_emb(torch.arange(T, device=idx.device))
        mask = torch.triu(torch.full((T, T), float("-inf")), diagonal=1)
        for b in self.blocks:
            h = b[0](x)
            x = x + b[1](h, h, h, attn_mask=mask, need_weights=False)[0]
            x = x + b[3](b[2](x))
        return self.head(self.ln_f(x))


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _by_role(roles: dict[str, str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {r: [] for r in ROLES}
    for name, role in roles.items():
        out[role].append(name)
    return out


def _assert_partition(model: nn.Module, groups: list[dict]) -> None:
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)), "a parameter landed in two groups"
    assert set(ids) == {id(p) for p in model.parameters()}, "a parameter landed in no group"
    for g in groups:
        assert g["param_names"] and len(g["param_names"]) == len(g["params"])


# ------------------------------------------------------------------------------------------------------ tests
def test_nanogpt_roles():
    model = NanoGPT()
    assert _count(model) == 818_176  # docs/design/protocol.md
    roles = param_roles(model)
    by = _by_role(roles)
    assert by["embedding"] == ["tok_emb.weight", "pos_emb.weight"]
    assert by["head"] == ["head.weight"]
    assert by["conv_first"] == []
    assert sorted(by["hidden_matrix"]) == sorted(
        f"blocks.{i}.{n}"
        for i in range(4)
        for n in ("1.in_proj_weight", "1.out_proj.weight", "3.0.weight", "3.2.weight")
    )
    assert all(roles[n] == "vector" for n, p in model.named_parameters() if p.ndim < 2)
    assert len(by["vector"]) == sum(1 for p in model.parameters() if p.ndim < 2)
    groups = param_groups(model, matrix="muon", other="adamw")
    _assert_partition(model, groups)
    assert [(g["role"], g["algorithm"]) for g in groups] == [
        ("hidden_matrix", "muon"),
        ("embedding", "adamw"),
        ("head", "adamw"),
        ("vector", "adamw"),
    ]


def test_resnet9_roles():
    model = ResNet9()
    assert _count(model) == 6_573_130  # docs/design/protocol.md
    by = _by_role(param_roles(model))
    assert by["conv_first"] == ["net.0.0.weight"]
    assert by["head"] == ["net.10.weight"]
    assert "net.10.bias" in by["vector"]
    assert by["hidden_matrix"] == [f"net.{i}.0.weight" for i in range(1, 8)]  # conv filters 2-8
    assert by["embedding"] == []
    assert sorted(by["vector"]) == sorted(
        ["net.10.bias"] + [f"net.{i}.1.{k}" for i in range(8) for k in ("weight", "bias")]
    )
    groups = param_groups(model, matrix="sinkgd", other="adamw", split={"conv_first": "sgd"})
    _assert_partition(model, groups)
    assert {g["role"]: g["algorithm"] for g in groups}["conv_first"] == "sgd"


def test_saddle_autoencoder_roles():
    model = SaddleAutoencoder()
    assert _count(model) == 437_664  # docs/design/protocol.md
    by = _by_role(param_roles(model))
    assert by["head"] == ["decoder.4.weight"]
    assert "encoder.0.weight" in by["hidden_matrix"]  # an MLP's input layer is hidden unless declared input-side
    roles = param_roles(model, overrides={"encoder.0.weight": "conv_first"})
    by = _by_role(roles)
    assert by["conv_first"] == ["encoder.0.weight"]
    # docs/design/protocol.md's SADDLE split: hidden = encoder.2, encoder.4, decoder.0, decoder.2 weights
    assert by["hidden_matrix"] == ["encoder.2.weight", "encoder.4.weight", "decoder.0.weight", "decoder.2.weight"]
    assert len(by["vector"]) == 6
    _assert_partition(model, param_groups(model, roles=roles))


def test_overrides():
    model = NanoGPT(n_layer=2)
    roles = param_roles(model, overrides={"blocks.*.in_proj_weight": "head", "blocks.1.*": "vector"})
    assert roles["blocks.0.1.in_proj_weight"] == "head"
    assert roles["blocks.1.1.in_proj_weight"] == "vector"  # later patterns win
    with pytest.raises(ValueError, match="Unknown role"):
        param_roles(model, overrides={"head.weight": "output"})
    with pytest.raises(ValueError, match="matches no parameter"):
        param_roles(model, overrides={"lm_head.weight": "head"})


class TiedLM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(20, 8)
        self.pos = nn.Embedding(4, 8)
        self.mlp = nn.Linear(8, 8)
        self.out = nn.Linear(8, 20, bias=False)
        self.out.weight = self.emb.weight

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.mlp(self.emb(idx) + self.pos.weight[: idx.shape[1]])))


def test_tied_output_is_the_head():
    model = TiedLM()
    roles = param_roles(model)
    assert roles == {
        "emb.weight": "head",
        "pos.weight": "embedding",
        "mlp.weight": "hidden_matrix",
        "mlp.bias": "vector",
    }
    _assert_partition(model, param_groups(model))


class HeadFirst(nn.Module):
    """Registers its classifier and its stem out of forward order, and has BatchNorm."""

    def __init__(self) -> None:
        super().__init__()
        self.classifier = nn.Linear(8, 3)
        self.body = nn.Conv2d(4, 8, 3, padding=1)
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.stem(x)))
        return self.classifier(F.relu(self.body(x)).mean((2, 3)))


def test_example_inputs_follow_the_forward_order():
    model = HeadFirst()
    by_registration = param_roles(model)
    assert by_registration["classifier.weight"] == "head" and by_registration["body.weight"] == "conv_first"
    model.train()
    stats = model.bn.running_mean.clone()
    roles = param_roles(model, example_inputs=torch.randn(2, 3, 6, 6))
    assert roles["stem.weight"] == "conv_first" and roles["body.weight"] == "hidden_matrix"
    assert roles["classifier.weight"] == "head"
    assert model.training and model.bn.training  # modes restored
    assert torch.equal(model.bn.running_mean, stats)  # the trace ran in eval mode
    assert not model.stem._forward_pre_hooks  # hooks removed
    kw = param_roles(model, example_inputs={"x": torch.randn(1, 3, 4, 4)})
    assert kw == roles


def test_param_groups_validation():
    model = NanoGPT(n_layer=1)
    roles = param_roles(model)
    with pytest.raises(ValueError, match="missing"):
        param_groups(model, roles={k: v for k, v in roles.items() if k != "head.weight"})
    with pytest.raises(ValueError, match="Unknown roles"):
        param_groups(model, roles={**roles, "head.weight": "output"})
    with pytest.raises(ValueError, match="Unknown role 'heads'"):
        param_groups(model, split={"heads": "sgd"})
