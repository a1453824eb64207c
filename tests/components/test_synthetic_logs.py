"""The seeded synthetic event log: repeatable, shaped like a shop log, learnable."""

import collections
import gzip
import io

import numpy as np
import pytest

from bvae_tf import features
from components import synthetic_logs
from components.multi_behavior_example_gen import parsing

pytestmark = pytest.mark.unit

SMALL = synthetic_logs.SyntheticLogConfig(num_users=120, num_items=90, num_clusters=4)


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a = synthetic_logs.write_log(tmp_path / "a.csv.gz", SMALL)
    b = synthetic_logs.write_log(tmp_path / "b.csv.gz", SMALL)
    other = synthetic_logs.SyntheticLogConfig(num_users=120, num_items=90, num_clusters=4, seed=1)
    synthetic_logs.write_log(tmp_path / "c.csv.gz", other)
    assert (tmp_path / "a.csv.gz").read_bytes() == (tmp_path / "b.csv.gz").read_bytes()
    assert (tmp_path / "a.csv.gz").read_bytes() != (tmp_path / "c.csv.gz").read_bytes()
    assert a["rows"] == b["rows"]


def test_funnel_repeats_power_law_and_time_span():
    config = synthetic_logs.SyntheticLogConfig()
    events = synthetic_logs.generate_events(config)
    raw = collections.Counter(label for _, _, label, _ in events)
    distinct = collections.Counter(label for _, _, label in {e[:3] for e in events})
    for counts in (raw, distinct):
        assert counts["pv"] > 2 * counts["cart"]  # click >> cart
        assert counts["cart"] > counts["fav"] > counts["buy"] > 0
    assert len(events) > 1.3 * len({e[:3] for e in events}), "repeats expected"

    clicks = collections.Counter(item for _, item, label, _ in events if label == "pv")
    top = sum(n for _, n in clicks.most_common(config.num_items // 10))
    assert top > 0.25 * sum(clicks.values()), "top 10% of items should get far over 10%"

    times = [t for *_, t in events]
    assert min(times) >= config.start
    assert max(times) < config.start + (config.days + 1) * 86400
    weeks = {(t - config.start) // (7 * 86400) for t in times}
    assert set(range(config.days // 7)) <= weeks


def test_users_keep_their_taste_over_time():
    # The dominant cluster of a user's early purchases predicts that of the late ones,
    # far above chance (1 / num_clusters).
    config = synthetic_logs.SyntheticLogConfig()
    cluster, _ = synthetic_logs.latent_structure(config)
    buys = collections.defaultdict(list)
    for user, item, label, t in synthetic_logs.generate_events(config):
        if label == "buy":
            buys[user].append((t, cluster[int(item[1:])]))
    agree = total = 0
    for purchases in buys.values():
        if len(purchases) < 4:
            continue
        purchases.sort()
        half = len(purchases) // 2
        early = collections.Counter(c for _, c in purchases[:half]).most_common(1)[0][0]
        late = collections.Counter(c for _, c in purchases[half:]).most_common(1)[0][0]
        agree += early == late
        total += 1
    assert total > 200
    assert agree / total > 0.7


def test_bad_rows_are_exactly_the_rejections_and_variants_parse(tmp_path):
    content, summary = synthetic_logs.render_log(SMALL)
    parser = parsing.RawLogParser(
        ("user_id", "item_id", "behavior", "timestamp"),
        features.DEFAULT_RAW_BEHAVIOR_MAPPING,
        features.DEFAULT_BEHAVIORS,
    )
    out = list(parser.parse(parsing.open_text(io.BytesIO(content)), "synthetic"))
    rejected = collections.Counter(o.reason for o in out if isinstance(o, parsing.Rejection))
    assert rejected == collections.Counter(summary["bad_rows"])
    assert set(rejected) == set(synthetic_logs.BAD_ROW_KINDS)
    mapping = features.DEFAULT_RAW_BEHAVIOR_MAPPING
    expected = [(u, i, mapping[b], t, "") for u, i, b, t in synthetic_logs.generate_events(SMALL)]
    events = [o for o in out[:-1] if not isinstance(o, parsing.Rejection)]
    assert events == expected
    assert out[-1].rows_read == summary["rows"] and out[-1].blank_lines == 1


def test_cli_writes_a_gzipped_log(tmp_path):
    path = tmp_path / "sub" / "events.csv.gz"
    synthetic_logs.main(["--output", str(path), "--users", "30", "--items", "20", "--seed", "3"])
    with gzip.open(path, "rt", errors="replace") as f:
        lines = f.read().splitlines()
    assert lines[0] == "user_id,item_id,behavior,timestamp"
    assert len(lines) > 100


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_users": 0}, "num_users"),
        ({"num_clusters": 500}, "num_clusters"),
        ({"cart_rate": 1.5}, "cart_rate"),
        ({"sessions_per_user": 0.0}, "sessions_per_user"),
        ({"bad_rows": -1}, "bad_rows"),
    ],
)
def test_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        synthetic_logs.SyntheticLogConfig(**kwargs)


def test_latent_structure_is_seeded():
    a = synthetic_logs.latent_structure(SMALL)
    b = synthetic_logs.latent_structure(SMALL)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert sorted(collections.Counter(a[0].tolist()).values()) == [22, 22, 23, 23]
