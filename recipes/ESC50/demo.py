#!/usr/bin/env python3
"""The main job on embedded demonstration data: ``make demo``.

Generates a small synthetic set in ESC-50 layout (see ``demo_data.py``;
not ESC-50), trains a small FastAST with token merging through the real
recipe (``train.py`` with ``hparams/tome.yaml``) and prints the r-sweep
table (accuracy and measured speed per merge rate).

    python recipes/ESC50/demo.py [--output_folder demo_output]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

RECIPE_DIR = Path(__file__).resolve().parent
ROOT = RECIPE_DIR.parents[1]
sys.path.insert(0, str(RECIPE_DIR))

import train  # noqa: E402
from demo_data import make_demo_esc50  # noqa: E402

#: Settings that make the recipe fit the 2 s demonstration clips and a few
#: minutes of CPU: a 4-block tiny AST, 208 frames, 8 epochs.
DEMO_OVERRIDES = [
    "--n_classes=5",
    "--fold=5",
    "--target_length=208",
    "--depth=4",
    "--tome_r=8",
    "--number_of_epochs=8",
    "--batch_size=16",
    "--lr=5e-4",
    "--lr_decay_start=4",
    "--timem=40",
    "--r_sweep=[0, 8, 16, 24]",
]


def main() -> int:
    """Generate the data if needed, train, print the r-sweep table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output_folder", default="demo_output")
    args = parser.parse_args()
    out = Path(args.output_folder).resolve()
    start = time.time()
    data = make_demo_esc50(str(out / "data"))
    argv = [
        str(ROOT / "hparams" / "tome.yaml"),
        f"--data_folder={data}",
        f"--output_root={out}",
        *DEMO_OVERRIDES,
    ]
    result = train.run(argv)
    print(f"\nDemo finished in {time.time() - start:.0f} s.")
    print(f"Outputs: {result['output_folder']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
