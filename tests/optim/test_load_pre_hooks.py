"""``load_state_dict`` runs the user's pre-hooks first, as torch does, and validates what they return."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import andi


def _trained(name: str) -> tuple[torch.optim.Optimizer, nn.Module]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 20), nn.Linear(20, 4))
    opt = andi.create_optimizer(name, model, 0.01)
    model(torch.randn(8, 20)).sum().backward()
    opt.step()
    return opt, model


@pytest.mark.parametrize("name", ["andi", "andi-hybrid"])
def test_a_pre_hook_that_repairs_an_old_dict_is_honoured(name: str) -> None:
    opt, _ = _trained(name)
    saved = opt.state_dict()
    for group in saved["param_groups"]:
        if "momentum" in group:
            group["momentum"] = 1.5  # an old, broken dict
    fresh, _ = _trained(name)

    def repair(optimizer, state_dict):
        for group in state_dict["param_groups"]:
            if group.get("momentum") == 1.5:
                group["momentum"] = 0.9
        return state_dict

    fresh.register_load_state_dict_pre_hook(repair)
    fresh.load_state_dict(saved)
    assert all(g.get("momentum", 0.9) == 0.9 for g in fresh.param_groups)


def test_what_a_pre_hook_returns_is_validated_and_a_refusal_changes_nothing() -> None:
    opt, model = _trained("andi")
    saved = opt.state_dict()
    before = {k: v.clone() for k, v in opt.state[model[0].weight].items()}

    def corrupt(optimizer, state_dict):
        state_dict = dict(state_dict)
        state_dict["param_groups"] = [dict(g, momentum=1.5) for g in state_dict["param_groups"]]
        return state_dict

    opt.register_load_state_dict_pre_hook(corrupt)
    with pytest.raises(ValueError, match=r"Invalid momentum value: 1\.5"):
        opt.load_state_dict(saved)
    assert opt.param_groups[0]["momentum"] == 0.9
    assert all(torch.equal(before[k], v) for k, v in opt.state[model[0].weight].items())

    def wrong_buffer(optimizer, state_dict):
        state = {k: dict(v) for k, v in state_dict["state"].items()}
        state[0]["momentum_buffer"] = torch.zeros(3, 3)
        return {**state_dict, "state": state}

    other, _ = _trained("andi")
    other.register_load_state_dict_pre_hook(wrong_buffer)
    with pytest.raises(ValueError, match=r"shape \(3, 3\)"):
        other.load_state_dict(saved)


def test_pre_hooks_run_once() -> None:
    opt, _ = _trained("andi")
    calls = []
    opt.register_load_state_dict_pre_hook(lambda o, sd: calls.append(1))
    opt.load_state_dict(opt.state_dict())
    assert calls == [1]
