"""Toy landscapes with a known optimum (``docs/design/protocol.md`` (d) 1-3).

* ``rosenbrock``: :math:`f(x, y) = (1 - x)^2 + 100 (y - x^2)^2` from :math:`(-1.5, 2)`; optimum
  :math:`f(1, 1) = 0`; passes when :math:`f < 10^{-3}` (``"solved"``). A 2-vector: ANDI's global branch.
* ``quadratic``: row/column-scaled quadratic
  :math:`f(W) = \\tfrac12 \\lVert D_r (W - W^\\star) D_c \\rVert_F^2` on :math:`W \\in \\mathbb{R}^{64\\times 64}`
  with diagonal :math:`D_r, D_c` log-uniform in :math:`[10^{-1.5}, 1]` (Hessian condition number up to
  :math:`10^6`); metric :math:`f(W_T) / f(W_0)` (``"relative"``).
* ``rotated-quadratic``: the same spectra rotated, :math:`f(W) = \\tfrac12 \\lVert A (W - W^\\star) B \\rVert_F^2`
  with dense SPD :math:`A = U D_r U^\\top`, :math:`B = V D_c V^\\top` (random orthogonal :math:`U, V`): the
  control where diagonal (row/column) equilibration should lose its edge and spectral methods keep theirs.
* ``*-noisy`` variants add Gaussian noise of standard deviation ``noise`` to every gradient entry; the loss
  *value* stays the exact :math:`f` (the noise enters only the gradient).

The problem (:math:`D_r, D_c, U, V, W^\\star`) is fixed by ``problem_seed`` (default 0, recorded); the
start :math:`W_0 \\sim \\mathcal{N}(0, 1)` by the run's init seed; gradient noise by its data seed.
There is no data, so every split evaluates the same objective.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from .base import Batch, DataRoot, SizeSpec, Task

__all__ = ["QuadraticModel", "QuadraticTask", "RosenbrockModel", "RosenbrockTask", "RotatedQuadraticTask"]

_TOY_SIZES = {
    "full": SizeSpec(steps=2000, batch_size=1, eval_every=100),
    "cpu": SizeSpec(steps=500, batch_size=1, eval_every=50),
    "smoke": SizeSpec(steps=20, batch_size=1, eval_every=10),
}


class _ToyTask(Task):
    """Shared plumbing: no data, every split is the objective itself."""

    sizes = _TOY_SIZES
    toy = True

    @property
    def splits(self) -> tuple[str, ...]:
        return ("val", "test")

    def describe(self) -> dict:
        return {**super().describe(), "options": self.options()}

    def options(self) -> dict:
        return {}

    def train_batches(
        self,
        seed: int,
        *,
        batch_size: int | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> Iterator[Batch]:
        while True:
            yield ()


# -------------------------------------------------------------------------------------------- Rosenbrock
class RosenbrockModel(nn.Module):
    """A single parameter ``xy`` (2-vector); ``forward()`` returns the Rosenbrock value."""

    def __init__(self, start: tuple[float, float] = (-1.5, 2.0), a: float = 1.0, b: float = 100.0) -> None:
        super().__init__()
        self.xy = nn.Parameter(torch.tensor(start, dtype=torch.float32))
        self.a, self.b = a, b

    def forward(self) -> Tensor:
        x, y = self.xy[0], self.xy[1]
        return (self.a - x) ** 2 + self.b * (y - x * x) ** 2


class RosenbrockTask(_ToyTask):
    name = "rosenbrock"
    primary_metric = "loss"
    higher_is_better = False
    deterministic = True  # a fixed start and exact gradients: the seeds repeat one run
    role_overrides: ClassVar[Mapping[str, str]] = {"xy": "vector"}
    #: f below this counts as solved (docs/design/protocol.md (d) 1).
    threshold = 1e-3

    def __init__(
        self,
        size: str = "cpu",
        data_root: DataRoot = None,
        *,
        split_mode: str = "fair",
        start: tuple[float, float] = (-1.5, 2.0),
    ) -> None:
        super().__init__(size, data_root, split_mode=split_mode)
        self.start = tuple(float(v) for v in start)

    def options(self) -> dict:
        return {"start": list(self.start), "threshold": self.threshold}

    def _build_model(self, seed: int) -> nn.Module:
        return RosenbrockModel(self.start)

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        return model()

    def _evaluate(self, model: nn.Module, split: str, device: torch.device, dtype: torch.dtype) -> dict[str, float]:
        f = model().item()
        dist = (model.xy.detach().double() - 1.0).norm().item()
        return {"loss": f, "distance": dist, "solved": float(f < self.threshold)}


# --------------------------------------------------------------------------------------------- quadratics
def _log_uniform(n: int, low_exp: float, generator: torch.Generator) -> Tensor:
    return 10.0 ** (low_exp * torch.rand(n, generator=generator, dtype=torch.float64))


def _random_orthogonal(n: int, generator: torch.Generator) -> Tensor:
    q, r = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))  # Haar-distributed


class QuadraticModel(nn.Module):
    """``weight`` (m×n) with fixed buffers ``left`` (m×m or m), ``right`` (n×n or n), ``target`` and ``f0``.

    ``forward()`` returns :math:`\\tfrac12\\lVert L (W - W^\\star) R\\rVert_F^2` where a 1-D ``left``/``right``
    means a diagonal matrix.
    """

    def __init__(self, left: Tensor, right: Tensor, target: Tensor) -> None:
        super().__init__()
        m, n = target.shape
        self.weight = nn.Parameter(torch.randn(m, n))  # W_0 ~ N(0, 1) from the seeded global RNG
        self.register_buffer("left", left.float())
        self.register_buffer("right", right.float())
        self.register_buffer("target", target.float())
        self.register_buffer("f0", self.forward().detach())

    def residual(self) -> Tensor:
        d = self.weight - self.target
        d = self.left[:, None] * d if self.left.ndim == 1 else self.left @ d
        return d * self.right[None, :] if self.right.ndim == 1 else d @ self.right

    def forward(self) -> Tensor:
        return 0.5 * self.residual().square().sum()


class QuadraticTask(_ToyTask):
    name = "quadratic"
    primary_metric = "relative"
    higher_is_better = False
    role_overrides: ClassVar[Mapping[str, str]] = {"weight": "hidden_matrix"}
    rotated = False
    #: log10 of the smallest diagonal scale: D in [10^-1.5, 1].
    low_exp = -1.5

    def __init__(
        self,
        size: str = "cpu",
        data_root: DataRoot = None,
        *,
        split_mode: str = "fair",
        shape: tuple[int, int] = (64, 64),
        noise: float = 0.0,
        problem_seed: int = 0,
    ) -> None:
        super().__init__(size, data_root, split_mode=split_mode)
        if noise < 0 or not math.isfinite(noise):
            raise ValueError(f"noise must be a finite non-negative standard deviation, got {noise}")
        self.shape = (int(shape[0]), int(shape[1]))
        self.noise = float(noise)
        self.problem_seed = int(problem_seed)

    def options(self) -> dict:
        return {
            "shape": list(self.shape),
            "noise": self.noise,
            "problem_seed": self.problem_seed,
            "rotated": self.rotated,
            "scales": f"log-uniform in [10^{self.low_exp}, 1]",
        }

    def problem(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(left, right, target)`` in float64, fixed by ``problem_seed``."""
        g = torch.Generator().manual_seed(self.problem_seed)
        m, n = self.shape
        d_r, d_c = _log_uniform(m, self.low_exp, g), _log_uniform(n, self.low_exp, g)
        target = torch.randn(m, n, generator=g, dtype=torch.float64)
        if not self.rotated:
            return d_r, d_c, target
        u, v = _random_orthogonal(m, g), _random_orthogonal(n, g)
        return (u * d_r) @ u.T, (v * d_c) @ v.T, target

    def _build_model(self, seed: int) -> nn.Module:
        return QuadraticModel(*self.problem())

    def train_batches(
        self,
        seed: int,
        *,
        batch_size: int | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> Iterator[Batch]:
        if self.noise == 0:
            yield from super().train_batches(seed, batch_size=batch_size, device=device, dtype=dtype)
            return
        generator = torch.Generator().manual_seed(seed)
        while True:
            yield ((self.noise * torch.randn(self.shape, generator=generator)).to(device=device, dtype=dtype),)

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        f = model()
        if batch:
            # value f, gradient grad f + noise: <noise, W> enters the graph, its value is subtracted again.
            tilt = (batch[0] * model.weight).sum()
            f = f + (tilt - tilt.detach())
        return f

    def _evaluate(self, model: nn.Module, split: str, device: torch.device, dtype: torch.dtype) -> dict[str, float]:
        f = model().double().item()
        return {"relative": f / model.f0.double().item(), "loss": f}


class RotatedQuadraticTask(QuadraticTask):
    name = "rotated-quadratic"
    rotated = True


class NoisyQuadraticTask(QuadraticTask):
    """``quadratic`` with gradient noise of standard deviation 0.01 (ours)."""

    name = "quadratic-noisy"

    def __init__(
        self, size: str = "cpu", data_root: DataRoot = None, *, split_mode: str = "fair", noise: float = 0.01, **kw: Any
    ) -> None:
        super().__init__(size, data_root, split_mode=split_mode, noise=noise, **kw)


class NoisyRotatedQuadraticTask(RotatedQuadraticTask):
    """``rotated-quadratic`` with gradient noise of standard deviation 0.01 (ours)."""

    name = "rotated-quadratic-noisy"

    def __init__(
        self, size: str = "cpu", data_root: DataRoot = None, *, split_mode: str = "fair", noise: float = 0.01, **kw: Any
    ) -> None:
        super().__init__(size, data_root, split_mode=split_mode, noise=noise, **kw)
