"""The LightningModule: the multi-exit model, its loss and its optimiser for one stage.

Stages (paper Sec. VI-B: "we first train the main branch ... then use it as the pre-trained
model to train the sub-models of early-exits"):

- ``main``: backbone + main classifier (exit 17), cross-entropy (optionally label-smoothed),
  SGD with (Nesterov) momentum and a one-cycle learning-rate schedule. The 16 heads are
  frozen (``requires_grad_(False)``): the loss never uses them, and DDP requires every
  parameter that needs a gradient to get one.
- ``exits``: the backbone (features + main classifier) is frozen — ``requires_grad_(False)``
  and kept in ``eval()`` (re-asserted at every epoch and batch start, so BatchNorm statistics
  never move) — and all 16 heads are trained together from one no-grad backbone pass per
  batch, on the unweighted sum of their cross-entropies (as SDN's "IC-only" training),
  optionally each mixed with distillation from the frozen main classifier (``kd_weight``).

Recipe options (docs/multiexit.md, "Training recipes"): weight decay only on conv and linear
weights (``decay_norm_bias=False``), an exponential moving average of the weights that is what
gets validated, tested and exported (``ema_decay``), and horizontal-flip test-time augmentation
reported in a column of its own (``tta``; the plain accuracy is never changed by it).
"""

from __future__ import annotations

import copy

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
        nesterov: bool = True,
        decay_norm_bias: bool = True,
        ema_decay: float = 0.0,
        tta: bool = False,
        warmup_pct: float = 0.15,
        anneal: str = "linear",
        kd_weight: float = 0.0,
        kd_temperature: float = 3.0,
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
        nesterov: Nesterov momentum (SGD only).
        decay_norm_bias: also decay BatchNorm weights, biases and the heads' pooling mix;
            ``False`` decays only conv and linear weights (tensors of 2 or more dimensions).
        ema_decay: keep an exponential moving average of all weights and buffers with this
            decay per step (0 = off); the average is what validation, test and export use.
        tta: also count horizontal-flip test-time augmentation (mean of the logits of the image
            and its mirror) in ``test_accuracy_tta``; ``test_accuracy`` stays plain.
        warmup_pct: fraction of the steps spent raising the learning rate to its peak.
        anneal: shape of the one-cycle schedule, ``"linear"`` or ``"cos"``.
        kd_weight: stage exits only: weight a of distillation from the main classifier,
            loss = (1 - a) CE + a T^2 KL(main/T || head/T) per head (0 = plain CE).
        kd_temperature: the temperature T of that distillation.
        """
        super().__init__()
        check_stage(stage)
        if optimizer not in ("sgd", "adam"):
            raise ValueError(f"Unknown optimizer {optimizer!r}; choose sgd or adam.")
        if anneal not in ("linear", "cos"):
            raise ValueError(f"Unknown anneal {anneal!r}; choose linear or cos.")
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay}; 0 turns it off.")
        if not 0.0 <= kd_weight <= 1.0:
            raise ValueError(f"kd_weight must be in [0, 1], got {kd_weight}.")
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
        # The moving average: a frozen copy, filled from the model at the first update.
        self.ema_model = copy.deepcopy(self.model).requires_grad_(False) if ema_decay else None
        self.ema_updates = 0  # saved in checkpoints (on_save_checkpoint), not a buffer
        self._reset_counts()
        self.test_accuracy: list[float] | None = None
        self.test_accuracy_tta: list[float] | None = None
        self.test_count: int | None = None  # images counted in the last test, over all ranks

    @property
    def eval_model(self) -> nn.Module:
        """The weights that are validated, tested and exported: the moving average if on."""
        return self.model if self.ema_model is None else self.ema_model

    # -- frozen backbone ---------------------------------------------------------------------
    def _freeze_backbone(self) -> None:
        if self.hparams.stage == "exits":
            self.model.backbone().eval()
        if self.ema_model is not None:
            self.ema_model.eval()  # a copy of weights, never trained: BatchNorm uses its stats

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
                maps = self.model.forward_features(x)
                teacher = self.model.classifier(maps[-1]) if self.hparams.kd_weight else None
            logits = [head(m) for head, m in zip(self.model.heads, maps[:-1], strict=True)]
            loss = sum(self.head_loss(z, y, teacher) for z in logits)  # SDN: unweighted sum
            acc = torch.stack([(z.argmax(1) == y).float().mean() for z in logits]).mean()
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=True)
        self.log("train_acc", acc, prog_bar=True, on_step=True, on_epoch=True)
        return loss

    def head_loss(
        self, logits: torch.Tensor, y: torch.Tensor, teacher: torch.Tensor | None
    ) -> torch.Tensor:
        """One head's loss: cross-entropy, mixed with distillation from ``teacher`` logits
        (Hinton et al.: ``T^2 KL(softmax(teacher/T) || softmax(logits/T))``) when
        ``kd_weight > 0``."""
        ce = self.loss(logits, y)
        a = self.hparams.kd_weight
        if not a or teacher is None:
            return ce
        t = self.hparams.kd_temperature
        kl = nn.functional.kl_div(
            nn.functional.log_softmax(logits / t, dim=1),
            nn.functional.log_softmax(teacher / t, dim=1),
            reduction="batchmean",
            log_target=True,
        )
        return (1 - a) * ce + a * t * t * kl

    @torch.no_grad()
    def update_ema(self) -> None:
        """One step of the moving average: ``ema <- d ema + (1 - d) w`` with the decay warmed
        up as ``min(d, (1 + n) / (10 + n))`` after n updates (the first update copies)."""
        if self.ema_model is None:
            return
        n = self.ema_updates
        d = min(self.hparams.ema_decay, (1 + n) / (10 + n)) if n else 0.0
        pairs = zip(
            self.ema_model.state_dict().values(), self.model.state_dict().values(), strict=True
        )
        for avg, w in pairs:
            if avg.is_floating_point():
                avg.lerp_(w.detach(), 1.0 - d)
            else:
                avg.copy_(w)
        self.ema_updates += 1

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        self.update_ema()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["ema_updates"] = self.ema_updates

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.ema_updates = int(checkpoint.get("ema_updates", 0))

    def parameter_groups(self) -> list[dict]:
        """The trained parameters, split for weight decay: all of them in one group, or with
        ``decay_norm_bias=False`` conv/linear weights (decayed) apart from BatchNorm weights,
        biases and pooling mixes (1-dimensional or scalar; never decayed)."""
        named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        wd = self.hparams.weight_decay
        if self.hparams.decay_norm_bias:
            return [{"params": [p for _, p in named], "weight_decay": wd}]
        return [
            {"params": [p for _, p in named if p.ndim >= 2], "weight_decay": wd},
            {"params": [p for _, p in named if p.ndim < 2], "weight_decay": 0.0},
        ]

    def configure_optimizers(self):
        h = self.hparams
        groups = self.parameter_groups()
        if h.optimizer == "sgd":
            opt = torch.optim.SGD(groups, lr=h.lr, momentum=h.momentum, nesterov=h.nesterov)
        else:
            opt = torch.optim.Adam(groups, lr=h.lr)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=h.lr, total_steps=total, pct_start=h.warmup_pct, anneal_strategy=h.anneal
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # -- evaluation: top-1 accuracy of every exit ----------------------------------------------
    def _reset_counts(self) -> None:
        # row 0: plain predictions; row 1: flip test-time augmentation (counted only with tta)
        self._correct = torch.zeros(2, self.model.num_exits, dtype=torch.long, device=self.device)
        self._count = torch.zeros((), dtype=torch.long, device=self.device)

    def _count_batch(self, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        x, y = batch
        logits = self.eval_model(x)
        self._correct[0] += torch.stack([(z.argmax(1) == y).sum() for z in logits])
        if self.hparams.tta:
            mirrored = self.eval_model(x.flip(-1))
            both = [(z + m).argmax(1) == y for z, m in zip(logits, mirrored, strict=True)]
            self._correct[1] += torch.stack([b.sum() for b in both])
        self._count += len(y)

    def _reduced_counts(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Correct predictions per exit (plain, and with TTA) and images, summed over all
        ranks. The evaluation loaders shard the images without padding, so every image is
        counted exactly once."""
        correct = self.trainer.strategy.reduce(self._correct, reduce_op="sum")
        count = self.trainer.strategy.reduce(self._count, reduce_op="sum")
        return correct, count

    def _accuracies(self) -> torch.Tensor:
        correct, count = self._reduced_counts()
        return correct[0].double() / count.clamp_min(1)

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
        self.test_accuracy = [float(a) for a in acc[0]]
        self.test_accuracy_tta = [float(a) for a in acc[1]] if self.hparams.tta else None
        self.log_dict({f"test_acc_exit{i + 1}": a.float() for i, a in enumerate(acc[0])})
        if self.hparams.tta:
            self.log_dict({f"test_acc_tta_exit{i + 1}": a.float() for i, a in enumerate(acc[1])})


def accuracy_frame(
    model: nn.Module, accuracy: list[float], accuracy_tta: list[float] | None = None
) -> pd.DataFrame:
    """The per-exit accuracy table: ``exit, layer, accuracy, params, macs`` (prefix + head),
    and ``accuracy_tta`` (flip test-time augmentation) after ``accuracy`` when given."""
    rows = exit_table(model)
    columns = {
        "exit": [r.exit for r in rows],
        "layer": [r.layer for r in rows],
        "accuracy": [round(a, 6) for a in accuracy],
    }
    if accuracy_tta is not None:
        columns["accuracy_tta"] = [round(a, 6) for a in accuracy_tta]
    columns["params"] = [r.params for r in rows]
    columns["macs"] = [r.macs for r in rows]
    return pd.DataFrame(columns)
