"""What every recipe's ``train.py`` does around its own data preparation.

1. :func:`load_run` composes ``dataset.yaml`` + variant + command line,
   checks the settings and, when the output folder holds a run, that they
   are the ones its checkpoints were trained with (:func:`check_resume`);
   then joins the DDP group under ``torchrun`` and saves the resolved YAML
   in the output folder. Nothing is written before these checks.
2. The recipe hands that YAML to SpeechBrain's
   ``sb.create_experiment_directory`` (``log.txt``, ``env.log``, a copy of
   ``train.py``), prepares its manifests and builds datasets.
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
from ruamel.yaml.error import MarkedYAMLError

from fastast_sb.audio import AudioError
from fastast_sb.averaging import EpochAverager, save_average
from fastast_sb.brain import FastASTBrain, unwrap
from fastast_sb.checkpoint import CheckpointError
from fastast_sb.config import load_hparams, run_settings
from fastast_sb.dataio import DataError
from fastast_sb.models.ast import AST
from fastast_sb.precision import resolve_precision
from fastast_sb.resume import (
    RunError,
    check_checkpoint_fits,
    check_resume,
    drop_stateless_recoverables,
    unknown_setting,
    write_fingerprint,
)
from fastast_sb.samplers import EvalShardSampler
from fastast_sb.sweep import r_sweep, write_tables
from fastast_sb.teacher_cache import TeacherLogitCache, check_augmentation
from fastast_sb.tome.schedule import Schedule, parse_schedule

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]


#: SpeechBrain's run options that hold a precision.
PRECISION_FLAGS = ("precision", "eval_precision")


def load_run(
    argv: Sequence[str], dataset_yaml: PathLike
) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Parse ``train.py VARIANT.yaml [--key=value ...]``; return the loaded
    hparams and SpeechBrain's run options (device, debug, precision, ...).

    Before anything is written, a :class:`RunError` stops a bad
    ``r_sweep``, a precision SpeechBrain cannot train in (``auto`` is
    resolved for the device first), and a resume with settings other than
    those of the checkpoints (:func:`check_resume`; ``--continue_changed=
    True`` continues anyway, if the checkpoint fits the new model). Then
    the settings' fingerprint goes to ``save/fingerprint.json`` and the
    resolved YAML to ``hyperparams.yaml``.
    """
    argv = resolve_precision_flags(argv)
    variant_file, run_opts, overrides_text = sb.parse_arguments(list(argv))
    try:
        overrides = load_hyperpyyaml(overrides_text) if overrides_text else {}
    except MarkedYAMLError as err:  # --lr=1 --lr=2, ...
        raise RunError(f"command-line settings: {err.problem}") from None
    continue_changed = overrides.pop("continue_changed", False)
    if not isinstance(continue_changed, bool):
        raise RunError(
            f"--continue_changed={continue_changed}: expected True or False"
        )
    try:
        hparams, resolved = load_hparams(
            dataset_yaml, variant_file, overrides=overrides
        )
    except KeyError as err:  # hyperpyyaml: "Override 'x' not found in: [..]"
        where = f"{Path(variant_file).name} on {Path(dataset_yaml).parent.name}"
        user_error = unknown_setting(err, where)
        if user_error is None:
            raise
        raise user_error from None
    hparams["r_sweep"] = parse_r_sweep(hparams["r_sweep"])
    device = run_opts["device"] or sb.utils.distributed.infer_device()
    for key in PRECISION_FLAGS:
        if key in hparams and key not in run_opts.overridden_args:
            hparams[key] = training_precision(hparams[key], device, key)
    paths = (dataset_yaml, variant_file)
    settings = training_settings(paths, overrides, run_opts)
    checkpointer = hparams["checkpointer"]
    drop_stateless_recoverables(checkpointer)  # no "empty state_dict"
    save = Path(checkpointer.checkpoints_dir)
    changed = check_resume(save, settings, continue_changed)
    if changed:
        check_checkpoint_fits(checkpointer, changed)
    # torchrun sets RANK / LOCAL_RANK: join the group (backend from the
    # command line, else from hparams) before any run_on_main.
    backend = run_opts["distributed_backend"]
    if "distributed_backend" not in run_opts.overridden_args:
        backend = hparams["distributed_backend"]
    sb.utils.distributed.ddp_init_group({"distributed_backend": backend})
    out = Path(hparams["output_folder"])
    out.mkdir(parents=True, exist_ok=True)
    if sb.utils.distributed.if_main_process():
        write_fingerprint(save, settings)
        (out / "hyperparams.yaml").write_text(resolved, encoding="utf-8")
    sb.utils.logger.setup_logging()
    if run_opts.get("debug"):
        hparams["r_sweep"] = hparams["r_sweep"][:2]
    return hparams, run_opts


def training_settings(
    paths: Sequence[PathLike],
    overrides: Dict[str, Any],
    run_opts: Dict[str, Any],
) -> Dict[str, str]:
    """:func:`~fastast_sb.config.run_settings` of the run, and ``debug``
    (SpeechBrain's few-batch training: ``--debug``, its batches, epochs).

    Example
    -------
    >>> import tempfile, os
    >>> f = os.path.join(tempfile.mkdtemp(), "a.yaml")
    >>> _ = open(f, "w").write("lr: 0.1\\ndata_folder: /data\\n")
    >>> opts = {"debug": True, "debug_batches": 2, "debug_epochs": 2}
    >>> training_settings([f], {"lr": 0.2}, opts)
    {'lr': '0.2', 'debug': '[2, 2]'}
    """
    settings = run_settings(*paths, overrides=overrides)
    debug = [run_opts["debug_batches"], run_opts["debug_epochs"]]
    settings["debug"] = json.dumps(debug if run_opts["debug"] else False)
    return settings


def parse_r_sweep(values: Any) -> List[Schedule]:
    """The schedules of ``r_sweep``, or a :class:`RunError` naming the bad
    entry.

    Example
    -------
    >>> [str(r) for r in parse_r_sweep([0, "flops:0.5"])]
    ['0', 'flops:0.5']
    >>> parse_r_sweep([0, "fast"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    fastast_sb.resume.RunError: r_sweep entry 'fast': merge schedule ...
    """
    if not isinstance(values, (list, tuple)):
        raise RunError(
            f"r_sweep={values!r}: expected a list of merge schedules, "
            "e.g. --r_sweep=[0, 8, flops:0.5]"
        )
    schedules = []
    for r in values:
        try:
            schedules.append(parse_schedule(r))
        except (TypeError, ValueError) as err:
            raise RunError(f"r_sweep entry {r!r}: {err}") from None
    return schedules


def training_precision(precision: str, device: str, key: str) -> str:
    """``precision`` as SpeechBrain trains or tests in it on ``device``
    (``auto`` resolved), or a :class:`RunError` (``int8`` is for trained
    models only).

    Example
    -------
    >>> training_precision("auto", "cpu", "precision") in ("bf16", "fp32")
    True
    >>> training_precision("int8", "cpu", "precision")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    fastast_sb.resume.RunError: precision=int8 is for inference only ...
    """
    if precision == "int8":
        raise RunError(
            f"{key}=int8 is for inference only (int8 layers of a trained "
            "model); train and test in fp32, bf16, fp16 or auto"
        )
    try:
        return resolve_precision(precision, device)
    except ValueError as err:
        raise RunError(f"{key}: {err}") from None


def resolve_precision_flags(argv: Sequence[str]) -> List[str]:
    """``argv`` with ``--precision`` / ``--eval_precision`` concrete for
    the run's ``--device`` (SpeechBrain accepts fp32, bf16 and fp16 only).

    Example
    -------
    >>> resolve_precision_flags(["a.yaml", "--precision", "fp32"])
    ['a.yaml', '--precision', 'fp32']
    """
    args = list(argv)

    def where(flag: str) -> Tuple[Optional[int], Optional[str]]:
        for i, arg in enumerate(args):
            if arg.startswith(f"--{flag}="):
                return i, arg.split("=", 1)[1]
            if arg == f"--{flag}" and i + 1 < len(args):
                return i + 1, args[i + 1]
        return None, None

    device = where("device")[1] or sb.utils.distributed.infer_device()
    for key in PRECISION_FLAGS:
        i, value = where(key)
        if i is not None:
            concrete = training_precision(value, device, key)
            args[i] = f"--{key}={concrete}" if "=" in args[i] else concrete
    return args


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
    """Command line of a recipe: returns 0, or 1 when the data or the
    run's settings cannot be used (a :class:`DataError` or its
    :class:`RunError`, an unusable checkpoint or audio file), printed as
    one clear line."""
    try:
        run(sys.argv[1:] if argv is None else argv)
    except (DataError, CheckpointError, AudioError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0
