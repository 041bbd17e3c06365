"""The demo's data: the generator is deterministic, and the student's view
can carry wrong training labels (an exact share, training folds only,
never the true class, the test fold clean) that a teacher trained on its
own clean clips can correct (issue 14.10)."""

from __future__ import annotations

import sys

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "recipes" / "ESC50"))

import demo_data  # noqa: E402


def _labels(rows):
    return {r["filename"]: (r["target"], r["category"]) for r in rows}


def test_generator_is_deterministic(tmp_path):
    a = demo_data.make_demo_esc50(str(tmp_path / "a"), 1, 0.1, 1, 0.3)
    b = demo_data.make_demo_esc50(str(tmp_path / "b"), 1, 0.1, 1, 0.3)
    names = sorted(p.name for p in (a / "audio").glob("*.wav"))
    assert names and names == sorted(p.name for p in (b / "audio").glob("*"))
    for name in names:
        assert (a / "audio" / name).read_bytes() == (
            b / "audio" / name
        ).read_bytes()


def test_label_noise_flips_an_exact_share_of_training_labels(tmp_path):
    pool = demo_data.make_demo_esc50(str(tmp_path / "pool"), 5, 0.05, 4)
    clean = _labels(
        demo_data._read_rows(
            demo_data.subset_esc50(pool, str(tmp_path / "c"), 0, 5)
        )
    )
    view = demo_data.subset_esc50(
        pool, str(tmp_path / "n"), 0, 5, label_noise=0.4
    )
    noisy = _labels(demo_data._read_rows(view))
    assert noisy.keys() == clean.keys()
    flipped = [f for f in clean if noisy[f] != clean[f]]
    train = [f for f in clean if not f.startswith("5-")]
    assert len(flipped) == round(0.4 * len(train)) == 40
    assert all(not f.startswith("5-") for f in flipped)  # test fold clean
    classes = {c for _, c in clean.values()}
    for f in flipped:
        target, category = noisy[f]
        assert category in classes and category != clean[f][1]
        assert int(target) == demo_data.ESC50_CLASSES.index(category)
    again = demo_data.subset_esc50(
        pool, str(tmp_path / "m"), 0, 5, label_noise=0.4
    )
    assert _labels(demo_data._read_rows(again)) == noisy  # deterministic


def test_label_noise_outside_zero_to_one_is_refused(tmp_path):
    pool = demo_data.make_demo_esc50(str(tmp_path / "pool"), 1, 0.05)
    for bad in (-0.1, 1.0):
        try:
            demo_data.subset_esc50(pool, str(tmp_path / "v"), 0, 1, bad)
        except ValueError as err:
            assert "label_noise" in str(err) and str(bad) in str(err)
        else:
            raise AssertionError(f"label_noise={bad} accepted")


def test_full_demo_test_set_makes_one_clip_half_a_point():
    import demo

    assert 5 * demo.FULL.test_clips >= 200  # one clip <= 0.5 points
    assert 0.0 < demo.LABEL_NOISE < 0.5  # the true class stays the mode
    assert demo.FULL.teacher_clips > demo.FULL.student_clips
