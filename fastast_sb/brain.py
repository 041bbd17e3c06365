"""``FastASTBrain``: the training core every recipe shares.

``compute_forward`` follows the data flow, one module per line::

    wav -> TimeShift (train) -> Mixup (train) -> KaldiFbank
        -> SpecAugment (train) -> GlobalNorm
        -> AST (r_train in training, the model's r in evaluation) -> ASTHead
    same augmented batch -> frozen teacher (if any) -> teacher logits

``model_input`` selects what ``embedding_model`` gets (``feats``, or
``wavs`` for a teacher network with its own front end).
``compute_objectives`` computes the task loss, or the CMKD loss with a
teacher (logging ``teacher_conf``: see
:func:`fastast_sb.distill.target_confidence`), and collects the scores of
the evaluation metrics: ``acc``, with ``multilabel`` also ``mAP``, ``mAUC``,
``dprime`` and the skipped-class counts, gathered over DDP processes (each
example once). Checkpoints keep the best ``ckpt_metric``. Hyperparameter
keys read: ``multilabel``, ``r_train``, ``kd_lambda``, ``kd_tau``,
``kd_tau2``, ``lr_schedule``, ``seed``, ``epoch_counter``, ``train_logger``
and ``metrics_file``. The teacher and an optional ``feature_augment`` go to
the constructor, never into ``modules`` (SpeechBrain trains those).
"""

from __future__ import annotations

import csv
import os
from typing import Any, Dict, Optional

import speechbrain as sb
import torch

from fastast_sb.averaging import unwrap
from fastast_sb.losses import task_loss
from fastast_sb.metrics import ScoreCollector, mean_over_processes
from fastast_sb.models.ast import AST
from fastast_sb.tome.schedule import Schedule


class FastASTBrain(sb.Brain):
    """SpeechBrain Brain for AST / FastAST classification and tagging.

    Arguments
    ---------
    teacher : callable, optional
        Frozen teacher ``teacher(wavs, lens, feats) -> logits`` run on the
        same augmented batch as the student; kept out of ``modules``.
    feature_augment : callable, optional
        ``feature_augment(feats, lens) -> feats`` on normalised features of
        training batches (AST's noise-and-roll for Speech Commands).
    ckpt_metric : str
        Validation metric whose maximum selects the kept checkpoint
        (``acc``, or ``mAP`` for multi-label tagging).
    *args, **kwargs
        As for :class:`speechbrain.Brain` (modules, opt_class, hparams,
        run_opts, checkpointer).
    """

    def __init__(
        self,
        *args: Any,
        teacher: Any = None,
        feature_augment: Any = None,
        ckpt_metric: str = "acc",
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.teacher = teacher
        self.feature_augment = feature_augment
        self.ckpt_metric = ckpt_metric
        if teacher is not None:
            teacher.to(self.device)
        self.eval_r: Optional[Schedule] = None
        # test_checkpoint: average. ``test_state`` (once set) replaces the
        # checkpoint's weights in evaluation.
        self.averager: Any = None
        self.test_state: Optional[Dict[str, Dict[str, torch.Tensor]]] = None
        self.teacher_cache: Any = None  # teacher logits by example id
        self.scores = ScoreCollector()
        self.last_metrics: Dict[str, float] = {}
        self._teacher_conf = [0.0, 0]  # KD target confidence: sum, count

    # ---------------------------------------------------------------- forward
    def compute_forward(self, batch: Any, stage: sb.Stage) -> Dict[str, Any]:
        """Student (and teacher) logits for a batch."""
        batch = batch.to(self.device)
        wavs, lens = batch.sig
        targets = batch.targets.data  # [B, C]
        train = stage == sb.Stage.TRAIN
        wavs = self.modules.time_shift(wavs, lens)
        wavs, targets, lens = self.modules.mixup(wavs, targets, lens)
        feats = self.modules.compute_features(wavs, lens)
        feats = self.modules.spec_augment(feats)
        feats = self.modules.mean_var_norm(feats, lens)
        if train and self.feature_augment is not None:
            feats = self.feature_augment(feats, lens)
        emb = self.embed(wavs, feats, lens, train)
        logits = self.modules.classifier(emb).squeeze(1)
        teacher_logits = None
        if train and self.teacher is not None:
            if self.teacher_cache is not None:  # computed once, clean clips
                teacher_logits = self.teacher_cache(batch.id, self.device)
            else:
                teacher_logits = self.teacher(wavs, lens, feats)
        return {
            "logits": logits,
            "targets": targets,
            "teacher_logits": teacher_logits,
        }

    def embed(
        self,
        wavs: torch.Tensor,
        feats: torch.Tensor,
        lens: torch.Tensor,
        train: bool,
    ) -> torch.Tensor:
        """Run ``embedding_model`` on its ``model_input``; an AST gets the
        stage's merge schedule (``r_train`` in training, else ``eval_r``)."""
        model = self.modules.embedding_model
        x = wavs if self.hparams.model_input == "wavs" else feats
        if isinstance(unwrap(model), AST):
            r = self.hparams.r_train if train else self.eval_r
            return model(x, lens, r=r)
        return model(x, lens)

    def compute_objectives(
        self, predictions: Dict[str, Any], batch: Any, stage: sb.Stage
    ) -> torch.Tensor:
        """Task loss, or ``lam * task + (1 - lam) * kd`` with a teacher."""
        logits = predictions["logits"]
        targets = predictions["targets"]
        teacher_logits = predictions["teacher_logits"]
        if teacher_logits is not None:
            from fastast_sb.distill import cmkd_loss, target_confidence

            conf = target_confidence(
                teacher_logits, self.hparams.kd_tau, self.hparams.multilabel
            )
            self._teacher_conf[0] += conf * len(teacher_logits)  # no sync
            self._teacher_conf[1] += len(teacher_logits)
            loss = cmkd_loss(
                logits,
                targets,
                teacher_logits,
                lam=self.hparams.kd_lambda,
                tau=self.hparams.kd_tau,
                multilabel=self.hparams.multilabel,
                tau2=self.hparams.kd_tau2,
            )["total"]
        else:
            loss = task_loss(logits, targets, self.hparams.multilabel)
        if stage != sb.Stage.TRAIN:
            self.scores.append(logits, targets, batch.id)
        return loss

    def on_evaluate_start(
        self, max_key: Any = None, min_key: Any = None
    ) -> None:
        """Load the test checkpoint, then the averaged weights if set."""
        super().on_evaluate_start(max_key=max_key, min_key=min_key)
        if self.test_state is not None:
            for name, state in self.test_state.items():
                unwrap(self.modules[name]).load_state_dict(state)

    # -------------------------------------------------------------- schedule
    def on_fit_batch_start(self, batch: Any, should_step: bool) -> None:
        """Set the learning rate from AST's schedule (epoch, step)."""
        epoch = self.hparams.epoch_counter.current
        lr = self.hparams.lr_schedule(epoch, self.optimizer_step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def on_stage_start(self, stage: sb.Stage, epoch: Optional[int] = None):
        """Reseed per epoch (exact resume) and reset the score collector."""
        self.scores = ScoreCollector()
        self._teacher_conf = [0.0, 0]
        if stage == sb.Stage.TRAIN and epoch is not None:
            # Augmentation and dropout draw from a stream that depends only
            # on (seed, epoch), so a resumed run repeats the same numbers.
            torch.manual_seed(int(self.hparams.seed) * 1000 + int(epoch))

    def stage_metrics(self, stage_loss: float) -> Dict[str, float]:
        """Loss, accuracy (and mAP, mAUC, d' if multi-label) of the stage,
        over the whole set under DDP (a collective: local in ``run_on_main``).
        """
        scores = self.scores.gather()
        loss = mean_over_processes(float(stage_loss), len(self.scores))
        metrics = {"loss": loss}
        if scores.stacked() is not None:
            metrics.update(scores.summary(self.hparams.multilabel))
        return metrics

    def on_stage_end(
        self, stage: sb.Stage, stage_loss: float, epoch: Optional[int] = None
    ) -> None:
        """Log, record the epoch's metrics and checkpoint (best + latest)."""
        if stage == sb.Stage.TRAIN:
            self.train_stats = {"loss": float(stage_loss)}
            total, count = self._teacher_conf
            if count:  # how sure the KD targets were (1 = one-hot)
                self.train_stats["teacher_conf"] = mean_over_processes(
                    float(total) / count, count
                )
            return
        metrics = self.stage_metrics(stage_loss)
        self.last_metrics = metrics
        if stage == sb.Stage.VALID:
            lr = self.optimizer.param_groups[0]["lr"]
            self.hparams.train_logger.log_stats(
                stats_meta={"epoch": epoch, "lr": lr},
                train_stats=self.train_stats,
                valid_stats=metrics,
            )
            # The epoch's copy for averaging goes first: if the run dies
            # before the checkpoint, the repeated epoch rewrites it.
            main = sb.utils.distributed.if_main_process()
            if self.averager is not None and main:
                self.averager.save(self.modules, epoch)
            self.checkpointer.save_and_keep_only(
                meta={**metrics, "epoch": epoch},
                max_keys=[self.ckpt_metric],
                num_to_keep=1,
            )
            self._append_metrics(epoch, lr, metrics)
        elif stage == sb.Stage.TEST:
            self.hparams.train_logger.log_stats(
                stats_meta={
                    "Epoch loaded": self.hparams.epoch_counter.current,
                    "r": str(self.eval_r),
                },
                test_stats=metrics,
            )

    def _append_metrics(
        self, epoch: int, lr: float, metrics: Dict[str, float]
    ) -> None:
        if not sb.utils.distributed.if_main_process():
            return
        path = self.hparams.metrics_file
        row = {"epoch": epoch, "lr": lr}
        row.update({f"train_{k}": v for k, v in self.train_stats.items()})
        row.update({f"valid_{k}": v for k, v in metrics.items()})
        new = not os.path.exists(path)
        with open(path, "a", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)
