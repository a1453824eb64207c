"""``MultiBehaviorExampleGen``: raw multi-behavior logs -> per-user tf.Examples by time.

TFX's own ExampleGens split by hash (tfx#352); this one deduplicates, filters and
splits a multi-behavior interaction log by time as the BVAE paper does (Rao et al.,
RecSys 2023, Sec. 4.1 steps i-v) and writes one tf.Example per user and split, with
the schema in ``bvae_tf.features``.

Example::

    example_gen = MultiBehaviorExampleGen(input_base="data/events.csv.gz")
    statistics_gen = tfx.components.StatisticsGen(
        examples=example_gen.outputs["examples"])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from bvae_tf import features
from components.multi_behavior_example_gen import config as config_lib
from components.multi_behavior_example_gen import executor, inputs


class MultiBehaviorExampleGenSpec(types.ComponentSpec):
    """Parameters and output of ``MultiBehaviorExampleGen``."""

    PARAMETERS = {
        "input_base": ExecutionParameter(type=str),
        "input_format": ExecutionParameter(type=str),
        "user_column": ExecutionParameter(type=str),
        "item_column": ExecutionParameter(type=str),
        "behavior_column": ExecutionParameter(type=str),
        "timestamp_column": ExecutionParameter(type=str),
        "behavior_mapping": ExecutionParameter(type=dict[str, str]),
        "behaviors": ExecutionParameter(type=list[str]),
        "target_behavior": ExecutionParameter(type=str),
        "min_item_target_events": ExecutionParameter(type=int),
        "min_user_target_events": ExecutionParameter(type=int),
        "split_method": ExecutionParameter(type=str),
        "split_boundaries": ExecutionParameter(type=list[float]),
        "drop_cold_eval_users": ExecutionParameter(type=bool),
        # An empty list turns the window off (absent or None means the default).
        "timestamp_window": ExecutionParameter(type=list[float]),
        "timeline_trim": ExecutionParameter(type=float),
        "max_cold_event_share": ExecutionParameter(type=float),
        "eval_only_behaviors": ExecutionParameter(type=list[str]),
        executor.SPAN_KEY: ExecutionParameter(type=int),
        executor.VERSION_KEY: ExecutionParameter(type=int, optional=True),
        # Part of the cache key: a changed local log reruns the component when cached.
        executor.FINGERPRINT_KEY: ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {}
    OUTPUTS = {
        standard_component_specs.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples)
    }


class MultiBehaviorExampleGen(base_beam_component.BaseBeamComponent):
    """Custom ExampleGen for multi-behavior interaction logs, split by time.

    Steps (each a Beam transform in ``transforms.py``): parse + validate -> dedup
    (keep the earliest event of each (user, item, behavior)) -> item filter -> user
    filter -> global time split -> drop eval/test users without train target events
    -> one tf.Example per user and split.

    Output ``examples``: an ``Examples`` artifact with splits ``train``, ``eval`` and
    ``test`` as gzipped TFRecords of ``tf.train.Example``; ``accounting.json`` beside
    them. Per-user example (raw ids as UTF-8 bytes)::

        user_id       bytes [1]
        <b>_items     bytes [n_b]  train items of behavior b in time order, for every
                                   configured b, an empty list when there is none
        <b>_heldout   bytes [h_b]  eval/test only: the split's items of b, same rules

    Beam pipeline options come from the pipeline's or the component's
    ``beam_pipeline_args`` (``with_beam_pipeline_args``).
    """

    SPEC_CLASS = MultiBehaviorExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(
        self,
        *,
        input_base: str,
        input_format: str = config_lib.RAW_LOG,
        user_column: str = config_lib.DEFAULT_USER_COLUMN,
        item_column: str = config_lib.DEFAULT_ITEM_COLUMN,
        behavior_column: str = config_lib.DEFAULT_BEHAVIOR_COLUMN,
        timestamp_column: str = config_lib.DEFAULT_TIMESTAMP_COLUMN,
        behavior_mapping: Mapping[str, str] | None = None,
        behaviors: Sequence[str] | None = None,
        target_behavior: str = features.DEFAULT_TARGET_BEHAVIOR,
        min_item_target_events: int = config_lib.DEFAULT_MIN_ITEM_TARGET_EVENTS,
        min_user_target_events: int = config_lib.DEFAULT_MIN_USER_TARGET_EVENTS,
        split_method: str = config_lib.DEFAULT_SPLIT_METHOD,
        split_boundaries: Sequence[float] = config_lib.DEFAULT_SPLIT_BOUNDARIES,
        drop_cold_eval_users: bool = True,
        timestamp_window: Sequence[float] | None = config_lib.DEFAULT_TIMESTAMP_WINDOW,
        timeline_trim: float = config_lib.DEFAULT_TIMELINE_TRIM,
        max_cold_event_share: float = config_lib.DEFAULT_MAX_COLD_EVENT_SHARE,
        eval_only_behaviors: Sequence[str] = (),
        span: int = 0,
        version: int | None = None,
    ) -> None:
        """Builds the component; every argument is checked here.

        Args:
          input_base: raw log: a CSV file (``.gz`` allowed), a folder of shards or a
            glob; release: the folder of ``<prefix>_{train,valid,test}`` files. A
            ``RuntimeParameter`` is accepted and checked at run time.
          input_format: ``"raw_log"`` or ``"release"`` (pre-split files, imported
            without re-splitting; dedup, filters and step v still apply, so pass
            ``min_item_target_events=0, min_user_target_events=0,
            drop_cold_eval_users=False`` to import them unchanged).
          user_column, item_column, behavior_column, timestamp_column: CSV header
            names (timestamps: unix seconds or ISO-8601, UTC when no offset).
          behavior_mapping: raw label (case-insensitive) or release file prefix ->
            behavior name; default ``features.DEFAULT_RAW_BEHAVIOR_MAPPING`` /
            ``features.RELEASE_BEHAVIOR_MAPPING``. Unmapped labels are rejected rows.
          behaviors: behaviors written as features; default: all of the mapping.
          target_behavior: behavior counted by the filters and step v.
          min_item_target_events: drop items with fewer target events (paper: 20 JD,
            10 UB; 0 = off).
          min_user_target_events: drop users with fewer target events (paper: 5).
          split_method: ``"cut_timestamps"``, ``"time_fractions"`` or
            ``"event_fractions"``; an event exactly at a cut goes to the later split.
          split_boundaries: (eval start, test start): unix seconds, or fractions of
            the time span / of the events (paper: 0.8, 0.9 of the timeline).
          drop_cold_eval_users: paper step v.
          timestamp_window: ``(start, end)`` unix seconds: raw-log rows with a
            timestamp outside ``[start, end)`` are rejected as
            ``implausible_timestamp`` (default 1990-01-01 to 2100-01-01 UTC);
            ``None`` turns the check off.
          timeline_trim: share of the kept events ignored at each end of the
            timeline by ``time_fractions`` (default 0.01: the 1st to 99th percentile
            event; 0: the paper's min-max span).
          max_cold_event_share: the run fails when the cold-user step drops more than
            this share of the eval/test events (default 0.5; 1 = never).
          eval_only_behaviors: behaviors allowed to have no train event (a subset of
            ``behaviors``, not the target); any other behavior without train events
            fails the run.
          span: ``span`` custom property of the output (as the stock ExampleGen).
          version: ``version`` custom property of the output, when given.

        A local input's files are fingerprinted here (count, sizes and modification
        times, ``inputs.input_fingerprint``) into the ``input_fingerprint`` execution
        property, so that with the pipeline's cache on a log rewritten at the same path
        reruns this component and everything after it. A remote input (``gs://...``)
        is known by its path only: give each new log a new path (or ``span``).

        Raises:
          ValueError: if an argument is invalid (the message names it). At run time
            the executor also raises ``ValueError`` for data unfit for training
            (``checks.data_problems``).
        """
        params: dict[str, Any] = {
            "input_format": input_format,
            "user_column": user_column,
            "item_column": item_column,
            "behavior_column": behavior_column,
            "timestamp_column": timestamp_column,
            "behavior_mapping": None if behavior_mapping is None else dict(behavior_mapping),
            "behaviors": None if behaviors is None else list(behaviors),
            "target_behavior": target_behavior,
            "min_item_target_events": min_item_target_events,
            "min_user_target_events": min_user_target_events,
            "split_method": split_method,
            "split_boundaries": split_boundaries,
            "drop_cold_eval_users": drop_cold_eval_users,
            "timestamp_window": timestamp_window,
            "timeline_trim": timeline_trim,
            "max_cold_event_share": max_cold_event_share,
            "eval_only_behaviors": eval_only_behaviors,
        }
        checked = config_lib.ExampleGenConfig(
            input_base=input_base if isinstance(input_base, str) else "runtime-parameter",
            **params,
        )
        if isinstance(span, bool) or not isinstance(span, int) or span < 0:
            raise ValueError(f"span must be an integer >= 0, got {span!r}")
        if version is not None and (
            isinstance(version, bool) or not isinstance(version, int) or version < 0
        ):
            raise ValueError(f"version must be None or an integer >= 0, got {version!r}")
        spec = MultiBehaviorExampleGenSpec(
            input_base=input_base,
            input_format=checked.input_format,
            user_column=checked.user_column,
            item_column=checked.item_column,
            behavior_column=checked.behavior_column,
            timestamp_column=checked.timestamp_column,
            behavior_mapping=dict(checked.behavior_mapping),
            behaviors=list(checked.behaviors),
            target_behavior=checked.target_behavior,
            min_item_target_events=checked.min_item_target_events,
            min_user_target_events=checked.min_user_target_events,
            split_method=checked.split_method,
            split_boundaries=[float(v) for v in checked.split_boundaries],
            drop_cold_eval_users=checked.drop_cold_eval_users,
            timestamp_window=[float(v) for v in checked.timestamp_window or ()],
            timeline_trim=float(checked.timeline_trim),
            max_cold_event_share=float(checked.max_cold_event_share),
            eval_only_behaviors=list(checked.eval_only_behaviors),
            span=span,
            version=version,
            input_fingerprint=inputs.local_input_fingerprint(checked)
            if isinstance(input_base, str)
            else None,
            examples=types.Channel(type=standard_artifacts.Examples),
        )
        super().__init__(spec=spec)
