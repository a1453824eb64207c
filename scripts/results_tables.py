"""Regenerates the JD comparison tables of docs/RESULTS.md ("JD, honest protocol")
from the result files in docs/results/jd (no training).

::

    python scripts/results_tables.py [--results docs/results/jd] [--doc docs/RESULTS.md]

Renders what ``python -m bvae_tf.experiment --combine`` renders over the comparison
rows (the studies' sweeps, ``bvae_tf.report.is_study_run``, are left to ``python -m
bvae_tf.report``): the honest table with the paired t-tests of BVAE and of
BVAE + item path against the best other row, the paper-protocol table and the compute
table, and writes them between the line "One seed per row unless the Seeds column says
otherwise." and the paragraph "The paper's rows for reference". Exits 1 (changing
nothing) when either marker is missing, 2 (naming the file) on a result file that
is not JD's, cannot be read or is malformed.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bvae_tf import experiment as E  # noqa: E402
from bvae_tf import report  # noqa: E402

START = "One seed per row unless the Seeds\ncolumn says otherwise.\n"
END = "The paper's rows for reference"
#: Table order of the rows (file names without ``_s<seed>``); others follow by name.
ROW_ORDER = (
    "popularity", "repeat", "ease", "ehcf", "ehcf_tuned", "ngcf", "ngcf_tuned",
    "vae_t", "vae_t_tuned",
    "vae_u", "vae_u_tuned", "recvae", "recvae_tuned", "vae_pp", "vae_pp_tuned",
    "bvae", "bvae_tuned", "bvae_tune10", "bvae_anneal", "bvae_anneal10000_beta",
    "bvae_anneal10000_wd1_e300", "bvae_e1000_p500", "mmoe", "mmoe_tuned", "cgc",
    "cgc_tuned", "exchange",
    "exchange_tuned", "no_base", "no_gff",
    "no_tff", "no_base_gff_tff", "no_base_gff_tff_tuned",
    "item_path", "item_path_g10", "item_path_g100", "item_path_g10_drop0.9",
    "item_path_g100_anneal1000", "bvae_boost", "item_path_g100_boost", "bvae_bm_boost",
    "bvae_cos3300_boost", "bvae_wd0.1_boost", "bvae_wd1_boost", "bvae_ema0.99_boost",
    "item_path_g10_wd1_boost",
    "sampled",
    "sampled_pop",
)  # fmt: skip
ITEM_PATH = "BVAE (gates=gated, item_path=True)"


def _sections(markdown: str) -> dict[str, str]:
    """``{heading text: body}`` of the ``### `` sections of ``render_markdown``."""
    parts = re.split(r"^### (.*)\n", markdown, flags=re.M)
    return {parts[i].strip(): parts[i + 1].strip() for i in range(1, len(parts) - 1, 2)}


def render(results: pathlib.Path) -> str:
    """The tables' Markdown from the JD result files in ``results``.

    Raises:
      ValueError: naming a file that is not a JD result, cannot be read or is
        malformed (``bvae_tf.experiment.combine``), or a folder with none.
    """

    def order(path: pathlib.Path) -> tuple[int, str]:
        row = re.sub(r"_s\d+$", "", path.stem)
        return (ROW_ORDER.index(row) if row in ROW_ORDER else len(ROW_ORDER), path.name)

    files = []
    for path in sorted(results.glob("*.json"), key=order):
        try:
            result = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"{str(path)!r}: {e}") from e
        if not isinstance(result, dict):
            raise ValueError(f"{str(path)!r}: not a result object")
        if pathlib.Path(str(result.get("data", ""))).name.upper() != "JD":
            raise ValueError(
                f"{str(path)!r} is not a JD result (data {result.get('data')!r}); these "
                "tables are docs/RESULTS.md's JD section (UB: python -m bvae_tf.report)"
            )
        if not report.is_study_run(result, "jd"):
            files.append(path)
    if not files:
        raise ValueError(f"no comparison result files in {str(results)!r}")
    rows = E.combine(files)
    labels = {r["method"] for r in rows}
    # Plain BVAE, found by its configuration as the report finds it: its label gains
    # a budget suffix while a run of another budget sits beside it.
    plain = report.find_untuned(rows, "bvae", "jd")
    anchor = plain["method"] if plain else None
    main = _sections(E.render_markdown(rows, 5, (E.HONEST, E.PAPER), anchor))
    honest = next(v for k, v in main.items() if k.startswith("honest"))
    item_tests = ""
    if ITEM_PATH in labels:
        item = _sections(E.render_markdown(rows, 5, (E.HONEST,), ITEM_PATH))
        tests = next(v for k, v in item.items() if k.startswith("honest")).split("\n\n", 1)[1]
        item_tests = "\n\n" + tests.replace(
            f"Paired t-test over users (per-user test NDCG@5, mean over seeds), {ITEM_PATH} "
            "vs the best other row:",
            "The same test for BVAE + item path (labelled `item_path=True`) against the "
            "best other row:",
        )
    # The paper-protocol table exists only where runs scored test every epoch.
    more = "".join(
        f"#### {k}\n\n{v}\n\n" for k, v in main.items() if k.startswith(("paper", "Compute"))
    )
    return f"\n{honest}{item_tests}\n\n{more}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", default=str(REPO / "docs/results/jd"))
    parser.add_argument("--doc", default=str(REPO / "docs/RESULTS.md"))
    args = parser.parse_args()
    doc = pathlib.Path(args.doc)
    try:
        text = doc.read_text()
    except OSError as e:
        parser.error(f"--doc {args.doc!r}: {e.strerror or e}")
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        print(f"{doc}: markers not found ({START.strip()!r} ... {END!r})", file=sys.stderr)
        return 1
    if not pathlib.Path(args.results).is_dir():
        parser.error(f"--results {args.results!r} is not a folder")
    try:
        tables = render(pathlib.Path(args.results))
    except ValueError as e:
        parser.error(str(e))
    doc.write_text(text[: start + len(START)] + tables + text[end:])
    print(f"{doc}: JD comparison tables regenerated from {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
