"""The registry: names, role-aware construction, hyperparameter plumbing, optional packages, the docs table."""

from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from andi import ANDI
from andi.optim import registry
from andi.optim.muon import Muon
from andi.optim.normuon import NorMuon
from andi.optim.registry import (
    AUX_ADAMW_LR,
    OPTIMIZERS,
    create_optimizer,
    list_optimizers,
    load_optimizer,
    markdown_table,
)
from andi.optim.rmnp import RMNP
from andi.optim.routed import RoutedOptimizer
from andi.optim.scion import Scion
from andi.optim.script_muon import ScriptMuon
from andi.optim.sinkgd import SinkGD

CORE = [
    "andi",
    "andi-reference",
    "andi-v7",
    "andi-hybrid",
    "adamw",
    "sgd",
    "muon",
    "d-muon",
    "d-muon-v7",
    "muon-andi-paper",
    "sinkgd",
    "rmnp",
    "scion",
    "normuon",
]
LIBRARY = ["soap", "shampoo", "prodigy", "lion"]


class GPTish(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.tok_emb = nn.Embedding(11, 8)
        self.block = nn.Sequential(nn.LayerNorm(8), nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 8))
        self.head = nn.Linear(8, 11, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tok_emb(idx)
        return self.head(x + self.block(x))


def _groups_by_role(opt: torch.optim.Optimizer) -> dict[str, dict]:
    return {g["role"]: g for g in opt.param_groups}


def test_names():
    assert list_optimizers(available_only=False) == CORE + LIBRARY
    assert set(CORE) <= set(list_optimizers())
    assert all(name == name.lower() for name in OPTIMIZERS)


@pytest.mark.parametrize(
    ("name", "cls"),
    # On the CPU the muon arm is our Muon: Newton–Schulz in float32 (torch.optim.Muon has bf16 only).
    [("muon", Muon), ("sinkgd", SinkGD), ("rmnp", RMNP), ("normuon", NorMuon)],
)
def test_hybrid_arms_route_hidden_matrices(name, cls):
    model = GPTish()
    opt = create_optimizer(
        name, model, lr=0.03, aux_lr=1e-3, aux_betas=(0.8, 0.9), aux_eps=1e-9, aux_weight_decay=0.05, weight_decay=0.01
    )
    assert isinstance(opt, RoutedOptimizer) and type(opt.inner[name]) is cls
    groups = _groups_by_role(opt)
    hidden = groups["hidden_matrix"]
    assert hidden["algorithm"] == name and hidden["lr"] == 0.03 and hidden["weight_decay"] == 0.01
    assert hidden["param_names"] == ["block.1.weight", "block.3.weight"]
    for role in ("embedding", "head", "vector"):
        g = groups[role]
        assert g["algorithm"] == "adamw"
        assert (g["lr"], g["betas"], g["eps"], g["weight_decay"]) == (1e-3, (0.8, 0.9), 1e-9, 0.05)
    assert groups["embedding"]["param_names"] == ["tok_emb.weight"]
    assert groups["head"]["param_names"] == ["head.weight"]


def test_d_muon_shares_lr_and_weight_decay_with_its_adamw():
    """D-Muon (Semenov et al.): the AdamW part takes the main lr and weight decay, β (0.8, 0.999), ε 1e-8; the Muon
    part uses the AdamW-matched scale with Nesterov momentum 0.95."""
    opt = create_optimizer("d-muon", GPTish(), lr=2e-3, weight_decay=0.01)
    groups = _groups_by_role(opt)
    assert type(opt.inner["d-muon"]) is Muon
    hidden = groups["hidden_matrix"]
    assert (hidden["adjust_lr_fn"], hidden["momentum"], hidden["nesterov"]) == ("match_rms_adamw", 0.95, True)
    assert (hidden["lr"], hidden["weight_decay"]) == (2e-3, 0.01)
    for role in ("embedding", "head", "vector"):
        g = groups[role]
        settings = (g["algorithm"], g["lr"], g["betas"], g["eps"], g["weight_decay"])
        assert settings == ("adamw", 2e-3, (0.8, 0.999), 1e-8, 0.01)
    explicit = _groups_by_role(create_optimizer("d-muon", GPTish(), lr=2e-3, aux_lr=1e-4))
    assert explicit["vector"]["lr"] == 1e-4


@pytest.mark.parametrize("name", ["adamw", "andi-v7", "d-muon", "d-muon-v7", "muon"])
def test_decay_rule_v7_decays_linear_weights_only(name):
    """The v7 groups: Linear/Conv2d/attention weights decay; embeddings, norms and biases get weight_decay 0. (Muon's
    aux AdamW takes no decay unless asked: the rule says which parameters may decay, each optimizer how much.)"""
    model = GPTish()
    extra = {"aux_weight_decay": 0.1} if name == "muon" else {}
    opt = create_optimizer(name, model, lr=1e-3, weight_decay=0.1, decay_rule="v7", **extra)
    names = {id(p): n for n, p in model.named_parameters()}
    decay = {names[id(p)]: g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert set(decay) == set(names.values())
    expected = {"block.1.weight", "block.3.weight", "head.weight"}
    assert {n for n, wd in decay.items() if wd == 0.1} == expected
    assert all(wd == 0.0 for n, wd in decay.items() if n not in expected)


def test_decay_rule_refusals():
    with pytest.raises(ValueError, match="unknown decay_rule"):
        create_optimizer("adamw", GPTish(), decay_rule="nanogpt")
    with pytest.raises(ValueError, match=r"pass the nn\.Module"):
        create_optimizer("adamw", list(GPTish().parameters()), decay_rule="v7")
    with pytest.raises(ValueError, match="Scion"):
        create_optimizer("scion", GPTish(), decay_rule="v7")


def test_muon_arm_is_torch_muon_with_bf16_newton_schulz():
    """``ns_dtype=torch.bfloat16`` asks for torch's precision, so torch's class takes the hidden matrices again."""
    opt = create_optimizer("muon", GPTish(), lr=0.03, ns_dtype=torch.bfloat16)
    assert type(opt.inner["muon"]) is torch.optim.Muon
    assert "ns_dtype" not in opt.inner["muon"].defaults


def test_hybrid_defaults_bare_params_and_role_overrides():
    model = GPTish()
    opt = create_optimizer("muon", model)
    groups = _groups_by_role(opt)
    assert groups["hidden_matrix"]["lr"] == 0.02 and groups["head"]["lr"] == AUX_ADAMW_LR
    assert groups["head"]["betas"] == (0.9, 0.95) and groups["head"]["eps"] == 1e-10
    assert groups["hidden_matrix"]["weight_decay"] == 0.0  # not torch.optim.Muon's 0.1

    bare = create_optimizer("rmnp", list(model.parameters()), lr=0.01)
    by_alg = {g["algorithm"]: g for g in bare.param_groups}
    assert {p.ndim for p in by_alg["rmnp"]["params"]} == {2} and {p.ndim for p in by_alg["adamw"]["params"]} == {1}

    over = create_optimizer("muon", model, roles={"head.weight": "hidden_matrix", "block.3.*": "vector"})
    groups = _groups_by_role(over)
    assert groups["hidden_matrix"]["param_names"] == ["block.1.weight", "head.weight"]
    assert "block.3.weight" in groups["vector"]["param_names"]
    with pytest.raises(ValueError, match=r"nn\.Module"):
        create_optimizer("muon", list(model.parameters()), roles={"head.weight": "head"})


def test_hybrid_extra_kwargs_reach_the_matrix_optimizer():
    opt = create_optimizer("sinkgd", GPTish(), lr=1e-3, L=1)
    assert _groups_by_role(opt)["hidden_matrix"]["L"] == 1
    opt = create_optimizer("muon", GPTish(), momentum=0.9, nesterov=False, ns_steps=3)
    g = _groups_by_role(opt)["hidden_matrix"]
    assert (g["momentum"], g["nesterov"], g["ns_steps"]) == (0.9, False, 3)
    with pytest.raises(TypeError):
        create_optimizer("rmnp", GPTish(), betas=(0.9, 0.99))


def test_model_without_hidden_matrices():
    model = nn.Sequential(nn.Embedding(5, 4), nn.Linear(4, 3))
    opt = create_optimizer("muon", model)
    assert set(opt.inner) == {"adamw"}


def test_single_arms():
    model = GPTish()
    adamw = create_optimizer("AdamW", model, lr=1e-3, betas=(0.9, 0.999))
    assert type(adamw) is torch.optim.AdamW and adamw.param_groups[0]["weight_decay"] == 0.0
    sgd = create_optimizer("sgd", model, lr=0.1)
    g = sgd.param_groups[0]
    assert type(sgd) is torch.optim.SGD and (g["momentum"], g["nesterov"]) == (0.9, True)
    script = create_optimizer("muon-andi-paper", model, lr=0.05)
    assert type(script) is ScriptMuon and len(script.param_groups[0]["params"]) == len(list(model.parameters()))
    with pytest.raises(ValueError, match="no weight decay"):
        create_optimizer("muon-andi-paper", model, weight_decay=0.1)
    with pytest.raises(ValueError, match="no weight decay"):
        create_optimizer("andi-reference", model, weight_decay=0.1)
    with pytest.raises(ValueError, match="Unknown optimizer 'adam'"):
        create_optimizer("adam", model)


def test_andi_arms():
    andi_mod = pytest.importorskip("andi.optim.andi")
    model = GPTish()
    paper = create_optimizer("andi", model, lr=0.05, weight_decay=0.01)
    ref = create_optimizer("andi-reference", model)
    assert type(paper) is andi_mod.ANDI and paper.param_groups[0]["compat"] == "paper"
    assert paper.param_groups[0]["weight_decay"] == 0.01 and paper.param_groups[0]["lr"] == 0.05
    assert ref.param_groups[0]["compat"] == "reference" and ref.param_groups[0]["lr"] == 0.02


def test_scion_recipes():
    model = GPTish()
    opt = create_optimizer("scion", model, lr=0.01)
    assert type(opt) is Scion
    groups = _groups_by_role(opt)
    assert (groups["hidden_matrix"]["norm"], groups["hidden_matrix"]["scale"]) == ("spectral", 3.0)
    assert groups["embedding"]["norm"] == "colnorm" and groups["embedding"]["norm_kwargs"]["transpose"]
    assert (groups["head"]["norm"], groups["head"]["scale"]) == ("sign", 10.0)
    assert groups["vector"]["norm"] == "biasrms"
    assert all(g["momentum"] == 0.1 and not g["unconstrained"] for g in opt.param_groups)
    row = create_optimizer("scion", model, recipe="rownorm", scales={"head": 20.0}, momentum=0.5)
    groups = _groups_by_role(row)
    assert groups["hidden_matrix"]["norm"] == "rownorm" and groups["head"]["scale"] == 20.0
    conv = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3), nn.Flatten(), nn.Linear(4, 2))
    g = _groups_by_role(create_optimizer("scion", conv))["hidden_matrix"]
    assert g["norm"] == "spectral" and g["norm_kwargs"] == {}  # SpectralConv for filters
    auto = create_optimizer("scion", list(model.parameters()), lr=0.01)
    assert auto.param_groups[0]["norm"] == "auto"
    with pytest.raises(ValueError, match=r"nn\.Module"):
        create_optimizer("scion", list(model.parameters()), recipe="colnorm")
    with pytest.raises(ValueError, match="Unknown Scion recipe"):
        create_optimizer("scion", model, recipe="spectrum")


def test_load_optimizer():
    make = load_optimizer("rmnp")
    opt = make(GPTish(), lr=0.01)
    assert type(opt.inner["rmnp"]) is RMNP
    with pytest.raises(ValueError, match="Unknown optimizer"):
        load_optimizer("nope")


def test_missing_optional_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "pytorch_optimizer", None)  # import now raises ImportError
    assert list_optimizers() == CORE
    assert list_optimizers(available_only=False) == CORE + LIBRARY
    for name in LIBRARY:
        with pytest.raises(ImportError, match=r"pip install 'pytorch-optimizer>=4.1' \(the 'family' extra\)") as info:
            create_optimizer(name, GPTish())
        assert name in str(info.value) and "pytorch-optimizer" in str(info.value)
    with pytest.raises(ImportError, match=r"\(the 'family' extra\)"):
        load_optimizer("soap")
    assert isinstance(create_optimizer("muon", GPTish()), RoutedOptimizer)  # core arms never need the extra


def test_too_old_optional_package(monkeypatch):
    pytest.importorskip("pytorch_optimizer")
    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda d: "3.9.0" if d == "pytorch-optimizer" else real(d))
    assert "soap" not in list_optimizers()
    with pytest.raises(ImportError, match=r">= 4\.1 \(found 3\.9\.0"):
        create_optimizer("soap", GPTish())


def test_library_kwargs_are_checked():
    pytest.importorskip("pytorch_optimizer")
    with pytest.raises(TypeError, match="unexpected keyword arguments \\['momentum'\\]"):
        create_optimizer("soap", GPTish(), momentum=0.9)


def test_docs_table_matches_registry():
    readme = Path(__file__).resolve().parents[2] / "README.md"
    assert markdown_table() in readme.read_text(encoding="utf-8"), "regenerate the table: registry.markdown_table()"


def test_every_spec_is_complete():
    for spec in OPTIMIZERS.values():
        assert spec.paper and spec.source and spec.state and spec.split and spec.default_lr > 0
        assert spec.kind in ("single", "hybrid", "scion")
        assert spec.source.startswith(("ours", "torch", "pytorch-optimizer"))
    assert registry.OPTIMIZERS["muon"].kind == "hybrid"


def test_andi_hybrid_routes_exactly_muons_split():
    """ANDI and Muon meet on equal footing: the same parameters go to the matrix optimizer, the rest to AdamW."""
    model = GPTish()

    def split(name: str) -> dict[str, tuple[str, float]]:
        opt = create_optimizer(name, model, lr=0.02, aux_lr=3e-4)
        names = {id(p): n for n, p in model.named_parameters()}
        return {names[id(p)]: (g["algorithm"], g["lr"]) for g in opt.param_groups for p in g["params"]}

    hybrid, muon = split("andi-hybrid"), split("muon")
    assert hybrid.keys() == muon.keys() == {n for n, _ in model.named_parameters()}
    for name, (algorithm, lr) in muon.items():
        assert hybrid[name] == (("andi-hybrid", lr) if algorithm == "muon" else (algorithm, lr))
    assert {a for a, _ in hybrid.values()} == {"andi-hybrid", "adamw"}
    opt = create_optimizer("andi-hybrid", model)
    assert isinstance(opt.inner["andi-hybrid"], ANDI)
