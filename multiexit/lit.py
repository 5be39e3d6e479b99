"""The LightningModule: the multi-exit model, its loss and its optimiser for one stage.

Stages (paper Sec. VI-B: "we first train the main branch ... then use it as the pre-trained
model to train the sub-models of early-exits"):

- ``main``: backbone + main classifier (exit 17), cross-entropy, SGD with Nesterov momentum
  and a one-cycle learning-rate schedule. The 16 heads are frozen (``requires_grad_(False)``):
  the loss never uses them, and DDP requires every parameter that needs a gradient to get one.
- ``exits``: the backbone (features + main classifier) is frozen — ``requires_grad_(False)``
  and kept in ``eval()`` (re-asserted at every epoch and batch start, so BatchNorm statistics
  never move) — and all 16 heads are trained together from one no-grad backbone pass per
  batch, on the unweighted sum of their cross-entropies (as SDN's "IC-only" training).
"""

from __future__ import annotations

import pandas as pd
import pytorch_lightning as pl
import torch
from torch import nn

from multiexit.errors import UnknownStageError
from multiexit.model import build_vgg16_multiexit, exit_table

STAGES = ("main", "exits")


def check_stage(stage: str, allowed: tuple[str, ...] = STAGES) -> str:
    """Return ``stage`` or raise :class:`UnknownStageError` naming the allowed ones."""
    if stage not in allowed:
        raise UnknownStageError(f"Unknown stage {stage!r}; choose one of {', '.join(allowed)}.")
    return stage


class MultiExitModule(pl.LightningModule):
    """Model, loss and optimiser of one training stage; nothing else."""

    def __init__(
        self,
        *,
        stage: str = "main",
        num_classes: int = 10,
        width: float = 1.0,
        head: str = "conv_pool",
        optimizer: str = "sgd",
        lr: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        label_smoothing: float = 0.0,
        channels_last: bool = False,
    ) -> None:
        """Args (keyword-only):
        stage: ``"main"`` or ``"exits"``.
        num_classes / width / head: passed to :func:`build_vgg16_multiexit`.
        optimizer: ``"sgd"`` (Nesterov momentum) or ``"adam"``.
        lr: peak learning rate of the one-cycle schedule.
        momentum: SGD momentum (maximum of the one-cycle momentum cycle).
        weight_decay: L2 weight decay of the trained parameters.
        label_smoothing: cross-entropy label smoothing, 0 = none.
        channels_last: keep weights in channels-last memory format (GPU speed).
        """
        super().__init__()
        check_stage(stage)
        if optimizer not in ("sgd", "adam"):
            raise ValueError(f"Unknown optimizer {optimizer!r}; choose sgd or adam.")
        self.save_hyperparameters()
        self.model = build_vgg16_multiexit(num_classes=num_classes, width=width, head=head)
        self.loss = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        if stage == "exits":
            self.model.backbone().requires_grad_(False)
        else:
            # Stage main never runs the heads. Freezing them (instead of DDP's
            # find_unused_parameters, which searches the autograd graph at every step) keeps
            # them out of the optimiser and out of DDP's gradient buckets, so plain DDP works.
            self.model.heads.requires_grad_(False)
        self._correct = torch.zeros(self.model.num_exits, dtype=torch.long)
        self._count = torch.zeros((), dtype=torch.long)
        self.test_accuracy: list[float] | None = None
        self.test_count: int | None = None  # images counted in the last test, over all ranks

    # -- frozen backbone ---------------------------------------------------------------------
    def _freeze_backbone(self) -> None:
        if self.hparams.stage == "exits":
            self.model.backbone().eval()

    def on_train_epoch_start(self) -> None:
        self._freeze_backbone()

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        self._freeze_backbone()  # validation inside an epoch calls .train() again

    # -- training ------------------------------------------------------------------------------
    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        x, y = batch
        if self.hparams.stage == "main":
            logits = self.model.forward_main(x)
            loss = self.loss(logits, y)
            acc = (logits.argmax(1) == y).float().mean()
        else:
            with torch.no_grad():
                maps = self.model.forward_features(x)[:-1]
            logits = [head(m) for head, m in zip(self.model.heads, maps, strict=True)]
            loss = sum(self.loss(z, y) for z in logits)  # SDN: unweighted sum over the exits
            acc = torch.stack([(z.argmax(1) == y).float().mean() for z in logits]).mean()
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=True)
        self.log("train_acc", acc, prog_bar=True, on_step=True, on_epoch=True)
        return loss

    def configure_optimizers(self):
        h = self.hparams
        params = [p for p in self.parameters() if p.requires_grad]
        if h.optimizer == "sgd":
            opt = torch.optim.SGD(
                params, lr=h.lr, momentum=h.momentum, nesterov=True, weight_decay=h.weight_decay
            )
        else:
            opt = torch.optim.Adam(params, lr=h.lr, weight_decay=h.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=h.lr, total_steps=total, pct_start=0.15, anneal_strategy="linear"
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # -- evaluation: top-1 accuracy of every exit ----------------------------------------------
    def _reset_counts(self) -> None:
        self._correct = torch.zeros(self.model.num_exits, dtype=torch.long, device=self.device)
        self._count = torch.zeros((), dtype=torch.long, device=self.device)

    def _count_batch(self, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        x, y = batch
        logits = self.model(x)
        self._correct += torch.stack([(z.argmax(1) == y).sum() for z in logits])
        self._count += len(y)

    def _reduced_counts(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Correct predictions per exit and images, summed over all ranks. The evaluation
        loaders shard the images without padding, so every image is counted exactly once."""
        correct = self.trainer.strategy.reduce(self._correct, reduce_op="sum")
        count = self.trainer.strategy.reduce(self._count, reduce_op="sum")
        return correct, count

    def _accuracies(self) -> torch.Tensor:
        correct, count = self._reduced_counts()
        return correct.double() / count.clamp_min(1)

    def on_validation_epoch_start(self) -> None:
        self._reset_counts()

    def validation_step(self, batch, batch_idx: int) -> None:
        self._count_batch(batch)

    def on_validation_epoch_end(self) -> None:
        acc = self._accuracies()
        # checkpoint selection: the main exit in stage main, the mean of the heads in stage exits
        score = acc[-1] if self.hparams.stage == "main" else acc[:-1].mean()
        self.log("val_acc", score.float(), prog_bar=True)
        self.log_dict({f"val_acc_exit{i + 1}": a.float() for i, a in enumerate(acc)})

    def on_test_epoch_start(self) -> None:
        self._reset_counts()

    def test_step(self, batch, batch_idx: int) -> None:
        self._count_batch(batch)

    def on_test_epoch_end(self) -> None:
        correct, count = self._reduced_counts()
        acc = correct.double() / count.clamp_min(1)
        self.test_count = int(count)
        self.test_accuracy = [float(a) for a in acc]
        self.log_dict({f"test_acc_exit{i + 1}": a.float() for i, a in enumerate(acc)})


def accuracy_frame(model: nn.Module, accuracy: list[float]) -> pd.DataFrame:
    """The per-exit accuracy table: ``exit, layer, accuracy, params, macs`` (prefix + head)."""
    rows = exit_table(model)
    return pd.DataFrame(
        {
            "exit": [r.exit for r in rows],
            "layer": [r.layer for r in rows],
            "accuracy": [round(a, 6) for a in accuracy],
            "params": [r.params for r in rows],
            "macs": [r.macs for r in rows],
        }
    )
