"""Seeded synthetic multi-behavior event log: the default input of the pipeline.

The log looks like a shop's raw interaction export (``user_id,item_id,behavior,
timestamp`` with the labels ``pv``, ``cart``, ``fav``, ``buy`` and unix-second
timestamps) and has structure a recommender can learn:

* items belong to latent clusters (categories) and have power-law (Zipf) popularity;
* every user prefers one cluster (``cluster_affinity`` of their views, the rest from
  the global popularity) and keeps that taste over time, so early behavior predicts
  later purchases;
* a funnel per viewed item: click (``pv``) >> add-to-cart > favorite > purchase, with
  purchases mostly after a cart;
* sessions spread over ``days`` weeks-long history with a daily rhythm (evening peak);
  items are re-viewed and re-bought across sessions (repeats that a keep-the-first
  dedup removes);
* a few deliberately bad rows (unknown label, bad timestamp, empty id, wrong column
  count, undecodable bytes) and harmless variants (upper-case labels, ISO-8601
  timestamps, padded and quoted fields, a blank line) that a robust reader accepts.

Usage::

    python -m components.synthetic_logs --output /tmp/events.csv.gz --seed 0
    python -m components.synthetic_logs --output big.csv.gz --users 50000 --items 20000
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime
import gzip
import io
import math
import pathlib
from collections import Counter
from typing import Any

import numpy as np
from absl import logging

#: 2024-01-01T00:00:00Z, unix seconds.
DEFAULT_START = 1704067200
#: Raw labels written for each step of the funnel.
CLICK_LABEL, CART_LABEL, FAVORITE_LABEL, PURCHASE_LABEL = "pv", "cart", "fav", "buy"
BAD_ROW_KINDS: tuple[str, ...] = (
    "unknown_behavior",
    "bad_timestamp",
    "empty_id",
    "wrong_column_count",
    "undecodable_bytes",
)


#: The largest mean sessions per user or views per session (numpy's Poisson sampler
#: refuses far larger means; a log this dense is no shop's).
MAX_MEAN_COUNT = 10_000


@dataclasses.dataclass(frozen=True)
class SyntheticLogConfig:
    """Size and shape of the synthetic log.

    Attributes:
      num_users: users.
      num_items: items.
      num_clusters: latent item clusters (user tastes).
      days: length of the history in days, from ``start`` (unix seconds, UTC).
      sessions_per_user: mean sessions per user (user activity is log-normal).
      views_per_session: mean item views per session.
      popularity_exponent: Zipf exponent of item popularity (``p ~ rank^-s``).
      cluster_affinity: share of a user's views drawn from their own cluster.
      cart_rate, favorite_rate: probability that a view leads to a cart / favorite.
      purchase_after_cart, purchase_without_cart: purchase probability of a view.
      bad_rows: deliberately invalid rows mixed in (cycling ``BAD_ROW_KINDS``).
      seed: the random seed; the same config writes the same file.
    """

    num_users: int = 400
    num_items: int = 240
    num_clusters: int = 6
    days: int = 42
    start: int = DEFAULT_START
    sessions_per_user: float = 14.0
    views_per_session: float = 5.0
    popularity_exponent: float = 0.8
    cluster_affinity: float = 0.85
    cart_rate: float = 0.3
    favorite_rate: float = 0.2
    purchase_after_cart: float = 0.45
    purchase_without_cart: float = 0.02
    bad_rows: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.type in (int, "int"):
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ValueError(f"{field.name} must be an integer, got {value!r}")
            elif isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{field.name} must be a number, got {value!r}")
            elif not math.isfinite(value):
                raise ValueError(f"{field.name} must be finite, got {value!r}")
        for name in ("sessions_per_user", "views_per_session"):
            if getattr(self, name) > MAX_MEAN_COUNT:
                raise ValueError(
                    f"{name} must be <= {MAX_MEAN_COUNT:,} (a mean count per user or "
                    f"session), got {getattr(self, name)!r}"
                )
        for name in ("num_users", "num_items", "num_clusters", "days"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.num_clusters > self.num_items:
            raise ValueError(
                f"num_clusters ({self.num_clusters}) must not exceed num_items ({self.num_items})"
            )
        for name in ("sessions_per_user", "views_per_session", "popularity_exponent"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        for name in (
            "cluster_affinity",
            "cart_rate",
            "favorite_rate",
            "purchase_after_cart",
            "purchase_without_cart",
        ):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)!r}")
        if self.bad_rows < 0:
            raise ValueError(f"bad_rows must be >= 0, got {self.bad_rows!r}")


def _hour_weights() -> np.ndarray:
    # Activity by hour of day (UTC): quiet nights, a midday bump, an evening peak.
    hours = np.arange(24)
    weights = (
        0.2
        + np.exp(-0.5 * ((hours - 13) / 2.0) ** 2)
        + 2 * np.exp(-0.5 * ((hours - 20) / 1.8) ** 2)
    )
    return weights / weights.sum()


def latent_structure(config: SyntheticLogConfig) -> tuple[np.ndarray, np.ndarray]:
    """The hidden item structure: cluster and popularity of every item.

    Returns:
      ``(cluster, popularity)``: ``[num_items] int64`` cluster of item ``i{k}`` and
      ``[num_items] float64`` unnormalized Zipf weight ``rank^-popularity_exponent``.
    """
    rng = np.random.default_rng([config.seed, 0])
    cluster = rng.permutation(np.arange(config.num_items) % config.num_clusters)
    popularity = rng.permutation(np.arange(1, config.num_items + 1)) ** (
        -config.popularity_exponent
    )
    return cluster, popularity


def generate_events(config: SyntheticLogConfig) -> list[tuple[str, str, str, int]]:
    """The valid events of the log, sorted by time.

    Returns:
      ``(user_id, item_id, raw_label, timestamp)`` tuples; ids are strings such as
      ``"u17"``/``"i203"``, timestamps unix seconds.
    """
    item_cluster, popularity = latent_structure(config)
    rng = np.random.default_rng([config.seed, 1])
    global_p = popularity / popularity.sum()
    cluster_p = []
    for cluster in range(config.num_clusters):
        weights = np.where(item_cluster == cluster, popularity, 0.0)
        cluster_p.append(weights / weights.sum())
    hour_p = _hour_weights()

    events: list[tuple[str, str, str, int]] = []
    for user in range(config.num_users):
        user_id = f"u{user}"
        taste = int(rng.integers(config.num_clusters))
        activity = rng.lognormal(mean=0.0, sigma=0.5)
        n_sessions = 1 + rng.poisson(max(config.sessions_per_user * activity - 1, 0.0))
        for _ in range(n_sessions):
            day = int(rng.integers(config.days))
            hour = int(rng.choice(24, p=hour_p))
            t = config.start + day * 86400 + hour * 3600 + int(rng.integers(3600))
            n_views = 1 + rng.poisson(max(config.views_per_session - 1, 0.0))
            own = rng.random(n_views) < config.cluster_affinity
            items = np.where(
                own,
                rng.choice(config.num_items, size=n_views, p=cluster_p[taste]),
                rng.choice(config.num_items, size=n_views, p=global_p),
            )
            for item in items:
                item_id = f"i{item}"
                t += int(rng.integers(10, 120))
                events.append((user_id, item_id, CLICK_LABEL, t))
                carted = rng.random() < config.cart_rate
                if carted:
                    events.append((user_id, item_id, CART_LABEL, t + int(rng.integers(5, 60))))
                if rng.random() < config.favorite_rate:
                    events.append((user_id, item_id, FAVORITE_LABEL, t + int(rng.integers(5, 60))))
                p_buy = config.purchase_after_cart if carted else config.purchase_without_cart
                if rng.random() < p_buy:
                    events.append(
                        (user_id, item_id, PURCHASE_LABEL, t + int(rng.integers(60, 900)))
                    )
    events.sort(key=lambda e: (e[3], e[0], e[1], e[2]))
    return events


def _csv_line(fields: list[str]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(fields)
    return buffer.getvalue().encode("utf-8")


def _bad_row(kind: str, rng: np.random.Generator, config: SyntheticLogConfig) -> bytes:
    user = f"u{rng.integers(config.num_users)}"
    item = f"i{rng.integers(config.num_items)}"
    t = str(config.start + int(rng.integers(config.days * 86400)))
    if kind == "unknown_behavior":
        return _csv_line([user, item, "share", t])
    if kind == "bad_timestamp":
        return _csv_line([user, item, CLICK_LABEL, "yesterday evening"])
    if kind == "empty_id":
        return _csv_line(["", item, CLICK_LABEL, t])
    if kind == "wrong_column_count":
        return _csv_line([user, item, CLICK_LABEL, t, "extra"])
    if kind == "undecodable_bytes":
        return f"{user},".encode() + b"i\xff\xfe" + f",{CLICK_LABEL},{t}\n".encode()
    raise ValueError(f"unknown bad row kind {kind!r}")


def _valid_row(event: tuple[str, str, str, int], variant: int) -> bytes:
    user, item, label, t = event
    if variant == 1:  # upper-case label
        return _csv_line([user, item, label.upper(), str(t)])
    if variant == 2:  # ISO-8601 timestamp
        iso = datetime.datetime.fromtimestamp(t, tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return _csv_line([user, item, label, iso])
    if variant == 3:  # padded fields and a quoted id
        return f' {user} ,"{item}", {label} ,{t} \n'.encode()
    return f"{user},{item},{label},{t}\n".encode()


def render_log(config: SyntheticLogConfig) -> tuple[bytes, dict[str, Any]]:
    """The log file's bytes (uncompressed CSV with a header) and a summary.

    Returns:
      ``(content, summary)``; summary: ``rows`` (data rows, blank line excluded),
      ``events`` per raw label, ``bad_rows`` per kind, ``start``/``end`` timestamps.
    """
    events = generate_events(config)
    rng = np.random.default_rng([config.seed, 2])
    variants = rng.choice(4, size=len(events), p=[0.94, 0.02, 0.02, 0.02])
    bad_kinds = [BAD_ROW_KINDS[k % len(BAD_ROW_KINDS)] for k in range(config.bad_rows)]
    bad_positions = sorted(int(p) for p in rng.integers(0, len(events) + 1, size=len(bad_kinds)))
    lines = [b"user_id,item_id,behavior,timestamp\n"]
    bad_iter = iter(zip(bad_positions, bad_kinds, strict=True))
    next_bad = next(bad_iter, None)
    blank_at = len(events) // 2
    for index, event in enumerate(events):
        while next_bad is not None and next_bad[0] == index:
            lines.append(_bad_row(next_bad[1], rng, config))
            next_bad = next(bad_iter, None)
        if index == blank_at:
            lines.append(b"\n")
        lines.append(_valid_row(event, int(variants[index])))
    while next_bad is not None:
        lines.append(_bad_row(next_bad[1], rng, config))
        next_bad = next(bad_iter, None)
    summary = {
        "rows": len(events) + len(bad_kinds),
        "events": dict(Counter(e[2] for e in events)),
        "bad_rows": dict(Counter(bad_kinds)),
        "start": events[0][3] if events else None,
        "end": events[-1][3] if events else None,
    }
    return b"".join(lines), summary


def write_log(path: str | pathlib.Path, config: SyntheticLogConfig | None = None) -> dict[str, Any]:
    """Writes the synthetic log to ``path`` (gzipped when it ends with ``.gz``).

    Args:
      path: output file; parent folders are created.
      config: size and shape; default ``SyntheticLogConfig()``.

    Returns:
      The summary of ``render_log`` plus ``path``.
    """
    config = config or SyntheticLogConfig()
    content, summary = render_log(config)
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        # No name and mtime=0 in the gzip header: the same config gives the same bytes.
        with (
            path.open("wb") as raw,
            gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as f,
        ):
            f.write(content)
    else:
        path.write_bytes(content)
    summary["path"] = str(path)
    return summary


def main(argv: list[str] | None = None) -> None:
    """CLI: ``python -m components.synthetic_logs --output PATH [--seed N] [sizes]``."""
    defaults = SyntheticLogConfig()
    parser = argparse.ArgumentParser(
        prog="python -m components.synthetic_logs", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--output", required=True, help="CSV path; .gz compresses")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--users", type=int, default=defaults.num_users)
    parser.add_argument("--items", type=int, default=defaults.num_items)
    parser.add_argument("--clusters", type=int, default=defaults.num_clusters)
    parser.add_argument("--days", type=int, default=defaults.days)
    parser.add_argument(
        "--sessions", type=float, default=defaults.sessions_per_user, help="mean sessions per user"
    )
    parser.add_argument("--bad-rows", type=int, default=defaults.bad_rows)
    args = parser.parse_args(argv)
    try:
        config = SyntheticLogConfig(
            num_users=args.users,
            num_items=args.items,
            num_clusters=args.clusters,
            days=args.days,
            sessions_per_user=args.sessions,
            bad_rows=args.bad_rows,
            seed=args.seed,
        )
    except ValueError as e:
        parser.error(str(e))
    logging.set_verbosity(logging.INFO)
    summary = write_log(args.output, config)
    logging.info(
        "wrote %d rows to %s: events %s, bad rows %s",
        summary["rows"],
        summary["path"],
        summary["events"],
        summary["bad_rows"],
    )


if __name__ == "__main__":
    main()
