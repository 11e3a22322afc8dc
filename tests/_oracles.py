"""Independent oracles written from the spec (``docs/design/algorithm.md``), sharing no code with the package.

``numpy_andi_direction`` / ``NumpyANDI``: Algorithm 1 in float64 numpy, the straightforward way.
``ScriptANDI``: a transcription of the behaviour docs/design/algorithm.md describes for the author's ``ANDI.py``
(torch ops in the order the script uses them), used to check ``compat="reference"`` bit for bit.
"""

from __future__ import annotations

import numpy as np
import torch


def numpy_andi_direction(g: np.ndarray, eps: float = 1e-8, min_dim: int = 16) -> np.ndarray:
    g = np.asarray(g, dtype=np.float64)
    nu = np.sqrt(np.sum(g * g))
    tau = np.sqrt(nu * nu + 1.0)
    if g.ndim >= 2:
        m = g.reshape(g.shape[0], -1)
        if min(m.shape) > min_dim:
            r = np.sqrt(np.sum(m * m, axis=1, keepdims=True))
            c = np.sqrt(np.sum(m * m, axis=0, keepdims=True))
            ghat = m / (r + c + eps)
            return (tau / (np.sqrt(np.sum(ghat * ghat)) + eps) * ghat).reshape(g.shape)
    return tau / (nu + eps) * g


def numpy_script_direction(g: np.ndarray, min_dim: int = 16) -> np.ndarray:
    """The author's script (docs/design/algorithm.md): ε on each norm, τ = hypot(‖G‖ + 1e-8, 1) on matrices,
    hypot(‖G‖, 1) otherwise."""
    g = np.asarray(g, dtype=np.float64)
    nu = np.sqrt(np.sum(g * g))
    if g.ndim >= 2:
        m = g.reshape(g.shape[0], -1)
        if min(m.shape) > min_dim:
            r = np.sqrt(np.sum(m * m, axis=1, keepdims=True)) + 1e-8
            c = np.sqrt(np.sum(m * m, axis=0, keepdims=True)) + 1e-8
            ghat = m / (r + c)
            tau = np.hypot(nu + 1e-8, 1.0)
            return (tau / (np.sqrt(np.sum(ghat * ghat)) + 1e-8) * ghat).reshape(g.shape)
    return np.hypot(nu, 1.0) / (nu + 1e-8) * g


class NumpyANDI:
    """fp64 ANDI over a list of numpy parameters: Algorithm 1 (docs/design/algorithm.md) or, with
    ``compat="reference"``, the script's variant (its direction, and a first momentum buffer of (1 + μ)·H₁)."""

    def __init__(
        self,
        params,
        lr=0.02,
        momentum=0.9,
        nesterov=True,
        weight_decay=0.0,
        eps=1e-8,
        min_dim=16,
        maximize=False,
        compat="paper",
    ):
        self.params = [np.array(p, dtype=np.float64) for p in params]
        self.bufs = [np.zeros_like(p) for p in self.params]
        self.lr, self.mu, self.nesterov, self.wd = lr, momentum, nesterov, weight_decay
        self.eps, self.min_dim, self.maximize, self.compat = eps, min_dim, maximize, compat
        self.first = True

    def step(self, grads) -> None:
        for i, g in enumerate(grads):
            g = -np.asarray(g, np.float64) if self.maximize else np.asarray(g, np.float64)
            if self.compat == "reference":
                h = numpy_script_direction(g, self.min_dim)
                if self.first:
                    self.bufs[i] = h.copy()
            else:
                h = numpy_andi_direction(g, self.eps, self.min_dim)
            self.bufs[i] = self.mu * self.bufs[i] + h
            u = h + self.mu * self.bufs[i] if self.nesterov else self.bufs[i]
            self.params[i] = self.params[i] * (1 - self.lr * self.wd) - self.lr * u
        self.first = False


class ScriptANDI(torch.optim.Optimizer):
    """The reference script's ANDI as docs/design/algorithm.md describes it (eps on each norm, hypot targets, buffer
    cloned from H₁ and then updated on the same step, no weight decay, math in the parameter dtype)."""

    def __init__(self, params, lr=0.02, momentum=0.9, nesterov=True):
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            lr, mom, nest = group["lr"], group["momentum"], group["nesterov"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                one = torch.tensor(1.0, device=g.device, dtype=g.dtype)
                big = g.ndim > 1 and g.shape[0] > 16 and g.reshape(g.shape[0], -1).shape[1] > 16
                if big:
                    mat = g.reshape(g.shape[0], -1)
                    row = mat.norm(dim=1, keepdim=True) + 1e-8
                    col = mat.norm(dim=0, keepdim=True) + 1e-8
                    white = (mat / (row + col)).view(g.shape)
                    target = torch.hypot(g.norm() + 1e-8, one)
                    h = white * (target / (white.norm() + 1e-8))
                else:
                    target = torch.hypot(g.norm(), one)
                    h = g * (target / (g.norm() + 1e-8))
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = h.clone()
                buf = state["momentum_buffer"]
                buf.mul_(mom).add_(h)
                update = h.add(buf, alpha=mom) if nest else buf
                p.add_(update, alpha=-lr)
