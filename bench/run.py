"""tagger's benchmarks. Run from the repository root with the project's virtualenv:

    .venv/bin/python bench/run.py convert              # engine vs rio cogeo create
    .venv/bin/python bench/run.py convert --inputs rgb-10000 --runs 3
    .venv/bin/python bench/run.py stack                # end to end, dispatch, POST, polling
    .venv/bin/python bench/run.py plot                 # docs/performance-*.png from results

Inputs are generated once under var/bench/ (about 2 GB for all of them); results are
written under bench/results/. See docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_INPUTS = "rgb-5000,rgb-7071,rgb-10000,rgb-14142,dem-5657,dem-8000,dem-11314"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("what", choices=("convert", "stack", "plot", "inputs"))
    parser.add_argument("--inputs", default=DEFAULT_INPUTS, help="comma-separated input names")
    parser.add_argument("--runs", type=int, default=5, help="runs per tool and input")
    parser.add_argument(
        "--folder",
        type=Path,
        default=ROOT / "var" / "bench",
        help="where inputs and outputs go (kept out of git)",
    )
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME:FIELD=VALUE,...",
        help="also run tagger with other CogOptions, e.g. tagger-zstd:compression=ZSTD",
    )
    args = parser.parse_args()
    os.chdir(ROOT)
    names = [n for n in args.inputs.split(",") if n]
    if args.what == "inputs":
        from bench import inputs

        for name in names:
            print(inputs.ensure(name, args.folder))
    elif args.what == "convert":
        from bench import convert

        variants = {}
        for variant in args.variant:
            name, _, options = variant.partition(":")
            variants[name] = [o for o in options.split(",") if o]
        convert.run(names, args.runs, args.folder, args.results, variants)
        print((args.results / "convert.md").read_text())
    elif args.what == "stack":
        from bench import stack

        stack.run(args.runs, args.folder, args.results)
    else:
        from bench import plot

        plot.run(args.results, ROOT / "docs")


if __name__ == "__main__":
    main()
