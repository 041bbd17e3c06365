"""What every recipe's ``train.py`` does around its own data preparation.

1. :func:`load_run` composes ``dataset.yaml`` + variant + command line,
   joins the DDP group under ``torchrun`` and saves the resolved YAML in
   the output folder.
2. The recipe prepares its manifests and builds datasets (its only job).
3. :func:`fit_and_test` trains a :class:`~fastast_sb.brain.FastASTBrain`
   (resuming from checkpoints), then tests every ``r`` of ``r_sweep`` with
   the throughput measured in the same run (``r_sweep.md`` / ``.csv``,
   ``test_metrics.json``).

Under DDP each process trains on its share, validation is sharded
(:class:`~fastast_sb.samplers.EvalShardSampler`) and gathered, and the test
sweep runs on the main process only (the throughput needs one process).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml

from fastast_sb.averaging import EpochAverager, save_average
from fastast_sb.brain import FastASTBrain, unwrap
from fastast_sb.config import load_hparams
from fastast_sb.dataio import DataError
from fastast_sb.models.ast import AST
from fastast_sb.samplers import EvalShardSampler
from fastast_sb.sweep import r_sweep, write_tables
from fastast_sb.teacher_cache import TeacherLogitCache, check_augmentation
from fastast_sb.tome.schedule import parse_schedule

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]


def load_run(
    argv: Sequence[str], dataset_yaml: PathLike
) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Parse ``train.py VARIANT.yaml [--key=value ...]``; return the loaded
    hparams and SpeechBrain's run options (device, debug, precision, ...).
    """
    variant_file, run_opts, overrides_text = sb.parse_arguments(list(argv))
    overrides = load_hyperpyyaml(overrides_text) if overrides_text else {}
    hparams, resolved = load_hparams(
        dataset_yaml, variant_file, overrides=overrides
    )
    hparams["r_sweep"] = [parse_schedule(r) for r in hparams["r_sweep"]]
    # torchrun sets RANK / LOCAL_RANK: join the group (backend from the
    # command line, else from hparams) before any run_on_main.
    backend = run_opts["distributed_backend"]
    if "distributed_backend" not in run_opts.overridden_args:
        backend = hparams["distributed_backend"]
    sb.utils.distributed.ddp_init_group({"distributed_backend": backend})
    out = Path(hparams["output_folder"])
    out.mkdir(parents=True, exist_ok=True)
    if sb.utils.distributed.if_main_process():
        (out / "hyperparams.yaml").write_text(resolved, encoding="utf-8")
    sb.utils.logger.setup_logging()
    if run_opts.get("debug"):
        hparams["r_sweep"] = hparams["r_sweep"][:2]
    return hparams, run_opts


def load_pretrained(hparams: Dict[str, Any]) -> None:
    """Copy encoder weights from ``pretrained_path`` (any supported format)."""
    path = hparams["pretrained_path"]
    if path is None:
        return
    model = hparams["embedding_model"]
    source = AST.from_pretrained(path, input_tdim=model.input_tdim)
    model.load_state_dict(source.state_dict())
    logger.info("encoder initialised from %s", path)


def load_teacher_cache(
    brain: FastASTBrain, hparams: Dict[str, Any], train_set: Any
) -> TeacherLogitCache:
    """Teacher logits of the training clips: read, or computed once."""
    check_augmentation(hparams, getattr(brain.teacher, "input", "feats"))
    path = Path(hparams["output_folder"]) / "teacher_logits.pt"
    source = str(hparams.get("teacher_checkpoint"))

    def read_or_build() -> TeacherLogitCache:
        if path.is_file():
            cache = TeacherLogitCache.load(path)
            if cache.source == source:
                return cache
        cache = TeacherLogitCache.build(
            brain, train_set, hparams["test_dataloader_opts"], source
        )
        cache.save(path)
        return cache

    # The main process reads or builds; under DDP the others then read its
    # file (cheaper than broadcasting the logits).
    distributed = sb.utils.distributed
    cache = read_or_build() if distributed.if_main_process() else None
    distributed.ddp_barrier()
    return cache if cache is not None else TeacherLogitCache.load(path)


def fit_and_test(
    hparams: Dict[str, Any],
    run_opts: Dict[str, Any],
    sets: Dict[str, Any],
    metric: str = "acc",
    feature_augment: Any = None,
) -> Dict[str, Any]:
    """Train, then evaluate the test set for every ``r`` of ``r_sweep``.

    Arguments
    ---------
    hparams, run_opts : dict
        From :func:`load_run`.
    sets : dict
        ``train``, ``valid`` and ``test`` datasets.
    metric : str
        Evaluation metric of the table; its best validation value picks the
        checkpoint.
    feature_augment : callable, optional
        For the Brain; the hparams' ``feature_augment`` by default.

    Returns
    -------
    dict
        ``rows`` (the sweep), ``paths``, ``output_folder`` and ``brain``.
    """
    load_pretrained(hparams)
    if feature_augment is None:
        feature_augment = hparams.get("feature_augment")
    brain = FastASTBrain(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
        teacher=hparams["teacher"],
        feature_augment=feature_augment,
        ckpt_metric=metric,
    )
    which = hparams["test_checkpoint"]
    if which not in ("last", "best", "average"):
        raise ValueError(
            f"test_checkpoint={which!r}: expected 'last', 'best' or 'average'"
        )
    save_folder = hparams["checkpointer"].checkpoints_dir
    if which == "average":
        brain.averager = EpochAverager(
            Path(save_folder) / "epochs_for_average",
            last_n=hparams["average_epochs"],
            limit=hparams["epoch_counter"].limit,
        )
    if hparams.get("teacher_cache") and brain.teacher is not None:
        brain.teacher_cache = load_teacher_cache(brain, hparams, sets["train"])
    valid_opts = dict(hparams["test_dataloader_opts"])
    if sb.utils.distributed.is_distributed_initialized():
        valid_opts["sampler"] = EvalShardSampler(sets["valid"])
    brain.fit(
        hparams["epoch_counter"],
        sets["train"],
        sets["valid"],
        train_loader_kwargs=hparams["train_dataloader_opts"],
        valid_loader_kwargs=valid_opts,
    )
    key = metric if which == "best" else "epoch"
    if which == "average":
        # Every process averages the same files (written by the main one).
        sb.utils.distributed.ddp_barrier()
        brain.test_state = brain.averager.average()
        if sb.utils.distributed.if_main_process():
            save_average(brain.test_state, save_folder)

    def evaluate(r: Any) -> float:
        brain.eval_r = r
        brain.evaluate(
            sets["test"],
            max_key=key,
            test_loader_kwargs=hparams["test_dataloader_opts"],
        )
        return brain.last_metrics[metric]

    out = Path(hparams["output_folder"])

    def sweep() -> Tuple[List[Dict[str, Any]], Dict[str, str]]:
        paths: Dict[str, str] = {}
        model = unwrap(brain.modules.embedding_model)
        if isinstance(model, AST):
            rows = r_sweep(
                model,
                evaluate,
                hparams["r_sweep"],
                batch_size=hparams["bench_batch_size"],
                repeats=hparams["bench_repeats"],
            )
            paths = write_tables(rows, str(out), metric=metric)
            print(Path(paths["markdown"]).read_text(encoding="utf-8"))
        else:  # a teacher network: no merging to sweep
            rows = [{"r": "n/a", "metric": evaluate(None)}]
            print(f"test {metric}: {100 * rows[0]['metric']:.2f} %")
        (out / "test_metrics.json").write_text(
            json.dumps({"metric": metric, "r_sweep": rows}, indent=2),
            encoding="utf-8",
        )
        return rows, paths

    # On the main process only (other DDP processes wait, then receive the
    # rows); inside run_on_main the test metrics are computed locally.
    rows, paths = sb.utils.distributed.run_on_main(sweep)
    return {
        "rows": rows,
        "paths": paths,
        "output_folder": str(out),
        "brain": brain,
    }


def recipe_main(
    run: Callable[[Sequence[str]], Any],
    argv: Optional[Sequence[str]] = None,
) -> int:
    """Command line of a recipe: returns 0, or 1 when the data cannot be
    used (a :class:`DataError`, printed as one clear line)."""
    try:
        run(sys.argv[1:] if argv is None else argv)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0
