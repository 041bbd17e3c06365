"""The clip check of every data preparation, each file opened once.

A preparation lists clips; :func:`screen_clips` learns each one's length and
sample rate (:func:`fastast_sb.audio.inspect_clip`) and sorts out those that
would stop training midway:

* missing or undecodable files (``problems``), refused in one error unless
  the caller skips them (AudioSet, where some clips are always missing);
* bad clips (``bad``): NaN/Inf samples or shorter than one 25 ms frame. The
  ``bad_clips`` option chooses: ``refuse`` (default) stops with one line
  naming the first of them, their count and how to skip them; ``skip``
  leaves them out of the manifests with their count in the log.

The sample rates found go to ``prepare.json`` (:func:`rate_summary`), from
which a training run reports clips below the model's rate once.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Mapping, Optional

from fastast_sb.audio import AudioError, inspect_clip
from fastast_sb.dataio import DataError

logger = logging.getLogger(__name__)

#: Values of the ``bad_clips`` option.
BAD_CLIPS = ("refuse", "skip")
#: Bad clips named in a refusal or a skip message.
SHOWN = 3


@dataclass
class ClipSurvey:
    """What :func:`screen_clips` found, by clip key: seconds and rate of
    each usable clip, why each other one is unusable (``problems``:
    ``missing``, ``missing: PATH``, ``unreadable: PATH (reason)``; ``bad``:
    ``PATH (reason)``) and the path of each clip."""

    seconds: Dict[str, float] = field(default_factory=dict)
    rates: Dict[str, int] = field(default_factory=dict)
    problems: Dict[str, str] = field(default_factory=dict)
    bad: Dict[str, str] = field(default_factory=dict)
    paths: Dict[str, str] = field(default_factory=dict)


def check_bad_clips(bad_clips: str) -> str:
    """``bad_clips`` if it is one of :data:`BAD_CLIPS`, else a DataError.

    Example
    -------
    >>> check_bad_clips("drop")
    Traceback (most recent call last):
    ...
    fastast_sb.dataio.DataError: bad_clips='drop'; expected refuse or skip
    """
    if bad_clips not in BAD_CLIPS:
        raise DataError(
            f"bad_clips={bad_clips!r}; expected {' or '.join(BAD_CLIPS)}"
        )
    return bad_clips


def survey_clips(clips: Mapping[str, Optional[Path]]) -> ClipSurvey:
    """Inspect every clip (``None``: not found) once.

    Example
    -------
    >>> survey_clips({"a": None, "b": Path("/no/b.wav")}).problems
    {'a': 'missing', 'b': 'missing: /no/b.wav'}
    """
    out = ClipSurvey()
    for key, path in clips.items():
        if path is None or not path.is_file():
            out.problems[key] = (
                "missing" if path is None else f"missing: {path}"
            )
            continue
        try:
            info = inspect_clip(path)
        except AudioError as err:
            out.problems[key] = f"unreadable: {path} ({err})"
            continue
        if info.problem:
            out.bad[key] = f"{path} ({info.problem})"
            continue
        out.seconds[key] = info.seconds
        out.rates[key] = info.sample_rate
        out.paths[key] = str(path)
    return out


def _shown(reasons: Mapping[str, str]) -> str:
    listed = list(reasons.values())
    more = ", ..." if len(listed) > SHOWN else ""
    return ", ".join(listed[:SHOWN]) + more


def screen_clips(
    clips: Mapping[str, Optional[Path]],
    where: str,
    bad_clips: str = "refuse",
    most: Optional[int] = None,
    skip_missing: bool = False,
) -> ClipSurvey:
    """:func:`survey_clips`, then refuse its ``problems`` (unless
    ``skip_missing``; ``most`` shown) in one DataError ``"N of M clips
    <where> cannot be used: ..."`` and its ``bad`` clips as ``bad_clips``
    says (see the module docstring).

    Example
    -------
    >>> import tempfile, os, numpy as np, soundfile as sf
    >>> f = Path(tempfile.mkdtemp()) / "short.wav"
    >>> sf.write(f, np.zeros(160), 16000)
    >>> screen_clips({"a": f}, "in /d")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    fastast_sb.dataio.DataError: 1 of 1 clips in /d would stop training: \
.../short.wav (10.0 ms, shorter than one 25 ms frame); fix or remove them, \
or pass --bad_clips=skip (bad_clips: skip) to leave them out
    >>> screen_clips({"a": f}, "in /d", "skip").bad  # doctest: +ELLIPSIS
    {'a': '.../short.wav (10.0 ms, shorter than one 25 ms frame)'}
    """
    check_bad_clips(bad_clips)
    survey = survey_clips(clips)
    if survey.problems and not skip_missing:
        raise DataError(
            f"{len(survey.problems)} of {len(clips)} clips {where} cannot be "
            "used:\n  " + "\n  ".join(list(survey.problems.values())[:most])
        )
    if not survey.bad:
        return survey
    counted = f"{len(survey.bad)} of {len(clips)} clips {where}"
    if bad_clips == "refuse":
        raise DataError(
            f"{counted} would stop training: {_shown(survey.bad)}; fix or "
            "remove them, or pass --bad_clips=skip (bad_clips: skip) to "
            "leave them out"
        )
    logger.warning(
        "skipped %s (bad_clips: skip): %s", counted, _shown(survey.bad)
    )
    return survey


def rate_summary(*surveys: ClipSurvey) -> Dict[str, Dict[str, object]]:
    """Usable clips per sample rate (as text) and the first of each, for
    ``prepare.json``.

    Example
    -------
    >>> s = ClipSurvey(rates={"a": 8000, "b": 8000}, paths={"a": "a.wav"})
    >>> rate_summary(s)
    {'8000': {'clips': 2, 'first': 'a.wav'}}
    """
    counts: Counter = Counter()
    first: Dict[int, str] = {}
    for survey in surveys:
        for key, rate in survey.rates.items():
            counts[rate] += 1
            first.setdefault(rate, survey.paths.get(key, key))
    return {
        str(rate): {"clips": counts[rate], "first": first[rate]}
        for rate in sorted(counts)
    }
