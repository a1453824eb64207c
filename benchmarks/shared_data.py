"""Where the benchmarks find the team's datasets: ``$BVAE_SHARED_DATA`` (as the tests
read it), else ``../shared/data`` beside the checkout (``../shared/data/README.md``).
"""

import os
import pathlib

ROOT = pathlib.Path(
    os.environ.get("BVAE_SHARED_DATA")
    or pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"
)
#: The released JD split (``{target,click,favourite,cart}_{train,valid,test}``).
JD_RELEASE = ROOT / "bvae" / "JD"
#: The raw JD event log (``user_id,item_id,behavior,timestamp``, gzip CSV).
JD_EVENTS = ROOT / "bvae" / "JD_events.csv.gz"
