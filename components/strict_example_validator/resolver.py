"""Which earlier statistics a span is compared with: the latest that passed validation.

TFX's ``LatestArtifactStrategy`` would hand the validator the newest statistics in
the store, and after a run that the drift check stopped, those are the drifted
span's own: re-running the same span would compare it with itself and pass. This
strategy keeps only statistics that a validator execution accepted (an
``ExampleValidator``-family execution that read them and finished COMPLETE or
CACHED) and returns the newest of those, so a drifted span is compared with the last
accepted one on every retry.
"""

from __future__ import annotations

import ml_metadata as mlmd
from ml_metadata.proto import metadata_store_pb2
from tfx import types
from tfx.dsl.components.common import resolver

_ACCEPTED = (metadata_store_pb2.Execution.COMPLETE, metadata_store_pb2.Execution.CACHED)
#: Execution type names of validators (the stock one and ``StrictExampleValidator``).
_VALIDATOR_TYPE_MARKER = "ExampleValidator"


def accepted_by_a_validator(
    store: mlmd.MetadataStore, artifacts: list[types.Artifact]
) -> list[types.Artifact]:
    """The ``artifacts`` read by a validator execution that finished COMPLETE or CACHED."""
    if not artifacts:
        return []
    events = store.get_events_by_artifact_ids([a.id for a in artifacts])
    inputs = [e for e in events if e.type == metadata_store_pb2.Event.INPUT]
    executions = {
        e.id: e for e in store.get_executions_by_id(sorted({e.execution_id for e in inputs}))
    }
    types_by_id = {
        t.id: t.name
        for t in store.get_execution_types_by_id(sorted({e.type_id for e in executions.values()}))
    }
    accepted = set()
    for event in inputs:
        execution = executions.get(event.execution_id)
        if (
            execution is not None
            and execution.last_known_state in _ACCEPTED
            and _VALIDATOR_TYPE_MARKER in types_by_id.get(execution.type_id, "")
        ):
            accepted.add(event.artifact_id)
    return [a for a in artifacts if a.id in accepted]


class LatestValidatedStatisticsStrategy(resolver.ResolverStrategy):
    """Resolves each channel to its newest artifact that a validator accepted
    (module docstring); an empty list when there is none (the first run)."""

    def resolve_artifacts(
        self, store: mlmd.MetadataStore, input_dict: dict[str, list[types.Artifact]]
    ) -> dict[str, list[types.Artifact]] | None:
        out = {}
        for key, artifacts in input_dict.items():
            accepted = accepted_by_a_validator(store, list(artifacts))
            out[key] = sorted(accepted, key=lambda a: a.id, reverse=True)[:1]
        return out
