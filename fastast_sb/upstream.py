"""Write the files a SpeechBrain pull request for the FastAST recipes adds.

    python -m fastast_sb.upstream OUT [--project ROOT]

``OUT`` gets, laid out like a SpeechBrain checkout:

- ``recipes/<Dataset>/FastAST/``: ``train.py``, the data preparation
  script, ``hparams/<variant>.yaml`` (the recipe's ``dataset.yaml`` folded
  into each variant, keys ordered so every ``!ref`` follows its target),
  ``README.md`` (upstream's results table) and ``extra_requirements.txt``
  naming this package, which holds the model and the Brain;
- ``tests/recipes/<Dataset>.csv``: the project's recipe-test rows with
  paths moved into the tree and data on upstream's sample clips
  (``tests/samples/ESC50``) and the small lists written under
  ``tests/samples/FastAST``.

Datasets keep upstream's names: ``ESC50``, ``Google-speech-commands`` and
``AudioSet``.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import shutil
import textwrap
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
import soundfile as sf
import yaml
from speechbrain.utils.run_opts import RunOptions

#: Our recipe folder -> (upstream dataset name, data preparation script).
RECIPES: Dict[str, Tuple[str, str]] = {
    "ESC50": ("ESC50", "prepare.py"),
    "SpeechCommands": ("Google-speech-commands", "prepare_speech_commands.py"),
    "AudioSet": ("AudioSet", "prepare_audioset.py"),
}
SAMPLES = "tests/samples/FastAST"
#: The EfficientAT teacher the recipe tests download (MIT licence).
TEACHER_URL = (
    "https://github.com/fschmid56/EfficientAT/releases/download/v0.0.1/"
    "mn04_as_mAP_432.pt"
)
TEACHER_FILE = "tests/tmp/FastAST/mn04_as_mAP_432.pt"
#: Row flag rewrites: project paths -> paths in a SpeechBrain checkout.
FLAG_PATHS = [
    ("../shared/speechbrain-upstream/tests/samples/", "tests/samples/"),
    ("../shared/data/teachers/mn04_as_mAP_432.pt", TEACHER_FILE),
    ("../shared/data/speech_commands", f"{SAMPLES}/speech_commands"),
    ("tests/samples/AudioSet", f"{SAMPLES}/AudioSet"),
    ("tests/samples/class_maps/", f"{SAMPLES}/class_maps/"),
]
_KEY = re.compile(r"^([A-Za-z_]\w*):")
_REF = re.compile(r"<([A-Za-z_]\w*)")


def yaml_blocks(text: str) -> List[Tuple[str, str]]:
    """Top-level ``(key, block)`` pairs of a YAML text; a block holds the
    comment lines above its key and the indented lines below it. A file's
    banner (a ``# ####`` comment block) and ``inherit:`` are dropped.

    Example
    -------
    >>> yaml_blocks("# a\\nx: 1\\ny:\\n    z: !ref <x>\\n")
    [('x', '# a\\nx: 1\\n'), ('y', 'y:\\n    z: !ref <x>\\n')]
    """
    blocks: List[Tuple[str, str]] = []
    pending: List[str] = []
    banner = False  # inside a banner: dropped up to the next blank line
    for line in text.splitlines(keepends=True):
        key = _KEY.match(line)
        if key:
            blocks.append((key[1], "".join(pending) + line))
            pending, banner = [], False
        elif line.startswith((" ", "\t", "-")) and blocks and not pending:
            blocks[-1] = (blocks[-1][0], blocks[-1][1] + line)
        elif line.strip() == "":
            pending, banner = [], False
        elif line.startswith("# ####"):
            pending, banner = [], True
        elif not banner:
            pending.append(line)
    return [(k, b) for k, b in blocks if k != "inherit"]


def _chain(path: Path) -> List[Path]:
    """``path`` after the files it inherits from (first ancestor first)."""
    text = path.read_text(encoding="utf-8")
    parent = re.search(r"^inherit:\s*(\S+)", text, re.M)
    return ([] if parent is None else _chain(path.parent / parent[1])) + [path]


def refs(block: str) -> List[str]:
    """Keys a block refers to with ``!ref``, in order."""
    found: List[str] = []
    for line in block.splitlines():
        if "!ref" in line:
            found += _REF.findall(line.split("!ref", 1)[1])
    return found


def fold(dataset_yaml: Path, variant: Path) -> Dict[str, str]:
    """Top-level blocks of ``dataset.yaml`` + variant (later files replace
    earlier keys), ordered so that each key comes after the keys it refers
    to (and otherwise as composed)."""
    merged: Dict[str, str] = {}
    for path in [dataset_yaml] + _chain(variant):
        for key, block in yaml_blocks(path.read_text(encoding="utf-8")):
            merged[key] = block
    ordered: Dict[str, str] = {}

    def visit(key: str, path: Tuple[str, ...] = ()) -> None:
        if key in ordered or key not in merged or key in path:
            return
        for dep in refs(merged[key]):
            visit(dep, path + (key,))
        ordered[key] = merged[key]

    for key in merged:
        visit(key)
    return ordered


def folded_text(
    dataset: str, dataset_yaml: Path, variant: Path, up_name: str
) -> str:
    """The PR's ``hparams/<variant>.yaml``: dataset settings folded in."""
    blocks = fold(dataset_yaml, variant)
    about = textwrap.wrap(
        f"FastAST recipe for {up_name}: hparams/{variant.name} of fastast_sb "
        f"with its recipes/{dataset}/dataset.yaml folded in. Model, Brain and "
        "teachers live in the fastast_sb package (../extra_requirements.txt).",
        76,
    )
    rule = f"# {'#' * 76}\n"
    head = rule + "".join(f"# {line}\n" for line in about) + rule + "\n"
    text, last = head, ""
    for block in blocks.values():
        lines = block.rstrip("\n") + "\n"
        if last and (lines[0] == "#" or "\n " in last + lines[:-1]):
            text += "\n"  # a blank line around comments and nested blocks
        text, last = text + lines, lines
    # Named class maps live beside ESC-50's train.py; the loader sets
    # project_root to recipes/<Dataset> (two folders above this file).
    esc10 = "FastAST" if up_name == "ESC50" else "../ESC50/FastAST"
    return text.replace(
        "<project_root>/recipes/ESC50/esc10_class_map.yaml",
        f"<project_root>/{esc10}/esc10_class_map.json",
    )


def unread_keys(text: str, script: str) -> List[str]:
    """Top-level keys of a folded YAML that neither the YAML (``!ref``) nor
    ``script`` mentions: those fastast_sb reads (SpeechBrain's check_yaml
    looks for them in ``train.py``)."""
    blocks = yaml_blocks(text)
    used = {r for _, b in blocks for r in refs(b)} | set(RunOptions().as_dict())
    return [
        k
        for k, b in blocks
        if k not in used
        and f'["{k}"]' not in script
        and not _key_line(b, k).split(":", 1)[1].strip().startswith("!apply")
    ]


def _key_line(block: str, key: str) -> str:
    """The line of ``block`` that defines ``key``."""
    return next(ln for ln in block.splitlines() if ln.startswith(f"{key}:"))


def train_script(source: str, keys: Sequence[str]) -> str:
    """Our recipe's ``train.py`` for the PR: the hyperparameter file is its
    own dataset layer, and the settings fastast_sb reads are listed."""
    source = source.replace('DATASET_YAML = RECIPE_DIR / "dataset.yaml"\n', "")
    source = re.sub(r"\n{4,}", "\n\n\n", source)
    source = source.replace(
        "load_run(argv, DATASET_YAML)", "load_run(argv, argv[0])"
    )
    source = re.sub(r"python recipes/\w+/train\.py", "python train.py", source)
    source = re.sub(
        r"Composes ``recipes/\w+/dataset\.yaml``, the variant file",
        "Loads hparams/<variant>.yaml (dataset settings folded in)",
        source,
    )
    listing = "".join(f'        "{k}": hparams.get("{k}"),\n' for k in keys)
    helper = (
        "\n\n\ndef library_settings(hparams: Dict[str, Any]) -> Dict[str, Any]:"
        '\n    """Settings of the hyperparameter file that fastast_sb reads '
        "(Brain,\n    runner, data loading); the file !ref's the others."
        '"""\n    return {\n' + listing + "    }"
    )
    marker = "\n\n\ndef build_datasets("
    if marker not in source or "load_run(argv, argv[0])" not in source:
        raise ValueError("train.py changed: cannot adapt it for upstream")
    source = source.replace(marker, helper + marker, 1)
    call = "    sets = build_datasets(hparams)\n"
    log = (
        "    read = library_settings(hparams)\n"
        '    print("fastast_sb reads:", ", ".join('
        "k for k in read if k in hparams))\n"
    )
    return source.replace(call, log + call, 1)


def recipe_rows(project: Path, dataset: str) -> List[Dict[str, str]]:
    """The project's ``tests/recipes/<dataset>.csv`` rows, moved into the
    PR tree (scripts, hparams and data paths)."""
    up, prep = RECIPES[dataset]
    base = f"recipes/{up}/FastAST"
    path = project / "tests" / "recipes" / f"{dataset}.csv"
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        flags = row["test_debug_flags"]
        for old, new in FLAG_PATHS:
            flags = flags.replace(old, new)
        name = Path(row["Hparam_file"]).name
        row.update(
            Dataset=up,
            Script_file=f"{base}/train.py",
            Hparam_file=f"{base}/hparams/{name}",
            Data_prep_file=f"{base}/{prep}",
            Readme_file=f"{base}/README.md",
            test_debug_flags=flags,
        )
        needs = TEACHER_FILE in flags
        row["test_download"] = (
            f"download_file('{TEACHER_URL}', '{TEACHER_FILE}')"
            if needs
            else "None"
        )
    return rows


def write_samples(out: Path, project: Path) -> None:
    """``tests/samples/FastAST``: AudioSet lists (on upstream's ESC-50
    sample clips), class maps and a three-clip Speech Commands layout of
    synthetic tones (data flow only)."""
    samples = out / SAMPLES
    shutil.copytree(
        project / "tests" / "samples" / "class_maps", samples / "class_maps"
    )
    audioset = samples / "AudioSet"
    audioset.mkdir(parents=True)
    for f in (project / "tests" / "samples" / "AudioSet").glob("*.csv"):
        shutil.copy(f, audioset)
    sc = samples / "speech_commands"
    clips = {"yes": "a1b2c3d4", "no": "b2c3d4e5", "up": "c3d4e5f6"}
    t = np.arange(16000) / 16000
    for k, (word, speaker) in enumerate(clips.items()):
        (sc / word).mkdir(parents=True)
        tone = 0.3 * np.sin(2 * np.pi * (300 + 200 * k) * t)
        sf.write(str(sc / word / f"{speaker}_nohash_0.wav"), tone, 16000)
    (sc / "_background_noise_").mkdir()
    rng = np.random.default_rng(0)
    noise = 0.05 * rng.standard_normal(32000)
    sf.write(str(sc / "_background_noise_" / "noise.wav"), noise, 16000)
    (sc / "validation_list.txt").write_text("no/b2c3d4e5_nohash_0.wav\n")
    (sc / "testing_list.txt").write_text("up/c3d4e5f6_nohash_0.wav\n")


def readme_text(project: Path, dataset: str, up: str, rows: List[dict]) -> str:
    """The PR recipe's README: the "Summary (SpeechBrain form)" section of
    our recipe README (data, command, results table, inference), for a
    script run from its own folder."""
    text = (project / "recipes" / dataset / "README.md").read_text("utf-8")
    head = "## Summary (SpeechBrain form)\n"
    if head not in text:
        raise ValueError(f"recipes/{dataset}/README.md has no {head.strip()}")
    body = text.split(head, 1)[1].split("\n## ", 1)[0]
    body = body.split("### Recipe tests", 1)[0].replace("### ", "## ")
    body = re.sub(r"python recipes/[\w-]+/", "python ", body)
    body = re.sub(r"\[([^]]+)\]\(#[^)]+\)", r"\1 in fastast_sb's README", body)
    variants = ", ".join(f"`{Path(r['Hparam_file']).name}`" for r in rows)
    variants = "\n".join(textwrap.wrap(variants, 76))
    return (
        f"# FastAST on {up}\n\n"
        "FastAST (Behera et al., 2024): the Audio Spectrogram Transformer "
        "with token\nmerging and cross-model knowledge distillation. Model, "
        "Brain and teachers\ncome from the `fastast_sb` package (`pip install "
        "-r extra_requirements.txt`);\nthis folder holds the data "
        f"preparation, `train.py` and\n{variants}.\nRun the commands "
        f"from `recipes/{up}/FastAST`.\n\n{body.strip()}\n\n"
        "# **About SpeechBrain**\n- Website: https://speechbrain.github.io/\n"
        "- Code: https://github.com/speechbrain/speechbrain/\n"
    )


def write_recipe(out: Path, project: Path, dataset: str) -> List[dict]:
    """One ``recipes/<Dataset>/FastAST`` folder; returns its CSV rows."""
    up, prep = RECIPES[dataset]
    src = project / "recipes" / dataset
    dst = out / "recipes" / up / "FastAST"
    (dst / "hparams").mkdir(parents=True)
    rows = recipe_rows(project, dataset)
    source = (src / "train.py").read_text(encoding="utf-8")
    texts = {}
    for row in rows:
        variant = project / "hparams" / Path(row["Hparam_file"]).name
        text = folded_text(dataset, src / "dataset.yaml", variant, up)
        texts[variant.name] = text
        (dst / "hparams" / variant.name).write_text(text, encoding="utf-8")
    keys = sorted({k for t in texts.values() for k in unread_keys(t, source)})
    (dst / "train.py").write_text(train_script(source, keys), encoding="utf-8")
    shutil.copy(src / prep, dst / prep)
    if dataset == "ESC50":
        cmap = yaml.safe_load((src / "esc10_class_map.yaml").read_text())
        (dst / "esc10_class_map.json").write_text(json.dumps(cmap, indent=2))
    extra = ["fastast_sb"]
    if (src / "extra_requirements.txt").is_file():
        extra += [
            line
            for line in (src / "extra_requirements.txt").read_text().split("\n")
            if line.strip() and not line.startswith("#")
        ]
    (dst / "extra_requirements.txt").write_text("\n".join(extra) + "\n")
    (dst / "README.md").write_text(readme_text(project, dataset, up, rows))
    return rows


def write_tree(out: Path, project: Path) -> List[Path]:
    """Write the PR tree into ``out`` (which must not exist or be empty);
    return the CSV files written."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty")
    written = []
    for dataset in RECIPES:
        rows = write_recipe(out, project, dataset)
        csv_path = out / "tests" / "recipes" / f"{RECIPES[dataset][0]}.csv"
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        with open(csv_path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, list(rows[0]), lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        written.append(csv_path)
    write_samples(out, project)
    return written


def main(argv: Sequence[str] = None) -> int:
    """Command line: ``python -m fastast_sb.upstream OUT``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="folder to write (new)")
    parser.add_argument(
        "--project",
        type=Path,
        default=Path(__file__).resolve().parents[1],
        help="fastast_sb checkout (with recipes/, hparams/, tests/recipes/)",
    )
    args = parser.parse_args(argv)
    try:
        files = write_tree(args.out, args.project)
    except (FileExistsError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}")
        return 1
    print(f"wrote {args.out} ({', '.join(f.name for f in files)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
