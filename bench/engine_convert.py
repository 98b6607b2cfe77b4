"""Convert one file with tagger's engine and its default options: ``engine_convert.py SRC DST``.

Run in a fresh process by bench/run.py, so its wall time and peak memory are the engine's
alone (no Django, no database), like ``rio cogeo create`` beside it. Options can be varied
with KEY=VALUE arguments naming CogOptions fields (``compression=ZSTD level=1``).
"""

import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from geoconvert.raster import CogOptions, convert  # noqa: E402


def main(src: str, dst: str, *overrides: str) -> None:
    fields = {f.name: f.type for f in dataclasses.fields(CogOptions)}
    options = {}
    for override in overrides:
        key, value = override.split("=", 1)
        if key not in fields:
            sys.exit(f"unknown CogOptions field {key!r}; fields: {', '.join(fields)}")
        if value.isdigit():
            options[key] = int(value)
        elif value in ("True", "False", "None"):
            options[key] = {"True": True, "False": False, "None": None}[value]
        else:
            options[key] = value
    convert(src, dst, options=CogOptions(**options))


if __name__ == "__main__":
    main(*sys.argv[1:])
