"""Rewrites result files of ``bvae_tf.experiment`` with their per-epoch curves stored
by column (``experiment.pack_curve``), as the experiment writes them now.

::

    python scripts/pack_curves.py out/comparison/jd/bvae_tune10.json [...]

A curve stored as one object per epoch repeats every name at every epoch; by column
each name is written once and floats keep ``experiment.CURVE_DIGITS`` significant
digits, so a file is about half its size (a 150-epoch BVAE run: about 250 KB of
curve per seed becomes about 90 KB). Everything else in the file is left as it is; the
selected epoch's metrics (``honest``, ``paper``, ``valid``) are not in the curve and keep
their full precision. Each file is checked (``experiment.check_result``) before and
after, and replaced whole. Exits 2 naming a file that cannot be read or is malformed.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from bvae_tf import experiment as E


def pack(path: pathlib.Path) -> tuple[int, int]:
    """Packs ``path``'s curves in place; returns its size before and after, in bytes.

    Raises:
      ValueError: naming the file, if it cannot be read or is not a result.
    """
    try:
        before = path.read_text()
        result = json.loads(before)
        if not isinstance(result, dict) or not isinstance(result.get("runs"), list):
            raise ValueError("not a result file (no 'runs' list)")
        E.check_result(json.loads(before))
        text = json.dumps(E.stored_result(result), indent=1, sort_keys=True)
        E.check_result(json.loads(text))
    except (OSError, ValueError) as e:
        raise ValueError(f"{str(path)!r}: {e}") from e
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return len(before.encode()), len(text.encode())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=pathlib.Path)
    args = parser.parse_args(argv)
    for path in args.files:
        try:
            before, after = pack(path)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"{path}: {before / 1e3:.0f} KB -> {after / 1e3:.0f} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
