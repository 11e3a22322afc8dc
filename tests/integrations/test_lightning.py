"""ANDI with a step-wise LR scheduler in PyTorch Lightning (recipe: docs/integrations/lightning.md).

A small MLP fits a fixed regression on the CPU; ``configure_optimizers`` returns ANDI and a LambdaLR warmup in the
dict form. A checkpoint written by ``trainer.save_checkpoint`` and resumed with ``trainer.fit(ckpt_path=...)``
must restore ANDI's momentum buffers and the scheduler, and continue exactly as the uninterrupted run.
"""

from __future__ import annotations

import pytest
import torch

L = pytest.importorskip("lightning")

import andi  # noqa: E402

BATCHES_PER_EPOCH = 4
WARMUP_STEPS = 10


class TinyRegressor(L.LightningModule):
    def __init__(self, lr: float = 0.02) -> None:
        super().__init__()
        self.lr = lr
        # A 32 x 32 hidden matrix takes ANDI's row/column equilibration (min(m, n) > 16); the rest its vector branch.
        self.net = torch.nn.Sequential(
            torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Linear(32, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1)
        )
        self.losses: list[float] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.losses.append(loss.item())
        return loss

    def configure_optimizers(self):
        optimizer = andi.ANDI(self.parameters(), lr=self.lr)
        warmup = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / WARMUP_STEPS))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": warmup, "interval": "step"}}


def regression_data() -> torch.utils.data.DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16 * BATCHES_PER_EPOCH, 8, generator=g)
    y = torch.tanh(x @ torch.randn(8, 1, generator=g) / 8**0.5)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16, shuffle=False)


def make_trainer(max_epochs: int, **kwargs) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=max_epochs,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        logger=False,
        **kwargs,
    )


def seeded_model(seed: int) -> TinyRegressor:
    torch.manual_seed(seed)
    return TinyRegressor()


class CaptureStateAtTrainStart(L.Callback):
    """Copy the optimizer's and scheduler's state when (re)started training begins, after a checkpoint is restored."""

    def on_train_start(self, trainer, pl_module):
        optimizer = trainer.optimizers[0]
        self.momentum = {
            i: optimizer.state[p]["momentum_buffer"].clone()
            for i, p in enumerate(pl_module.parameters())
            if p in optimizer.state
        }
        self.lr = optimizer.param_groups[0]["lr"]
        self.scheduler = dict(trainer.lr_scheduler_configs[0].scheduler.state_dict())


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Tiny models: a second thread only contends on the shared CI machine."""


def test_andi_with_a_step_scheduler_lowers_the_loss():
    model = seeded_model(0)
    data = regression_data()
    x, y = data.dataset.tensors

    def full_loss() -> float:
        with torch.no_grad():
            return torch.nn.functional.mse_loss(model.net(x), y).item()

    before = full_loss()
    trainer = make_trainer(max_epochs=5)
    trainer.fit(model, data)

    assert isinstance(trainer.optimizers[0], andi.ANDI)
    assert trainer.global_step == 5 * BATCHES_PER_EPOCH
    assert trainer.lr_scheduler_configs[0].scheduler.last_epoch == 5 * BATCHES_PER_EPOCH  # "interval": "step"
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(model.lr)  # warmup finished
    assert full_loss() < 0.2 * before


def test_fit_from_checkpoint_restores_andi_momentum_and_scheduler_and_matches_uninterrupted_run(tmp_path):
    uninterrupted = seeded_model(0)
    make_trainer(max_epochs=4).fit(uninterrupted, regression_data())

    first_half = seeded_model(0)
    trainer = make_trainer(max_epochs=2)
    trainer.fit(first_half, regression_data())
    path = tmp_path / "half.ckpt"
    trainer.save_checkpoint(path)
    saved = torch.load(path, weights_only=False)
    saved_momentum = saved["optimizer_states"][0]["state"]
    saved_scheduler = saved["lr_schedulers"][0]
    assert saved_scheduler["last_epoch"] == 2 * BATCHES_PER_EPOCH < WARMUP_STEPS  # saved mid-warmup

    capture = CaptureStateAtTrainStart()
    resumed = seeded_model(1)  # a different initialisation: the checkpoint must supply everything
    resumed_trainer = make_trainer(max_epochs=4, callbacks=[capture])
    resumed_trainer.fit(resumed, regression_data(), ckpt_path=path)

    assert capture.momentum.keys() == saved_momentum.keys() and len(saved_momentum) == 6
    for i, buf in saved_momentum.items():
        assert buf["momentum_buffer"].abs().sum() > 0
        assert torch.equal(capture.momentum[i], buf["momentum_buffer"]), f"momentum buffer {i} was not restored"
    assert capture.scheduler["last_epoch"] == saved_scheduler["last_epoch"]
    assert capture.lr == pytest.approx(0.02 * (2 * BATCHES_PER_EPOCH + 1) / WARMUP_STEPS)  # not back at step 0

    assert resumed_trainer.global_step == 4 * BATCHES_PER_EPOCH
    assert len(resumed.losses) == 2 * BATCHES_PER_EPOCH  # only the remaining steps ran
    assert resumed.losses == pytest.approx(uninterrupted.losses[2 * BATCHES_PER_EPOCH :], rel=1e-6)
    for (name, p), q in zip(resumed.named_parameters(), uninterrupted.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-7, msg=f"{name} differs from the uninterrupted run")
