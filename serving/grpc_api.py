"""The local server's gRPC services: TF Serving's ``PredictionService`` and ``ModelService``.

``tensorflow.serving.PredictionService/Predict`` and ``/GetModelMetadata`` and
``tensorflow.serving.ModelService/GetModelStatus`` (``tensorflow_serving.apis``),
answered by a :class:`~serving.model_server.ModelServer`. A
:class:`~serving.request_checks.ServingError` aborts the call with its status code
and message, as TF Serving answers; any other exception is logged and answered
``INTERNAL``.
"""

from __future__ import annotations

from collections.abc import Callable

import grpc
from absl import logging
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from serving.model_server import ModelServer
from serving.request_checks import ServingError


def _grpc_call(method: Callable):
    def handler(request, context):
        try:
            return method(request)
        except ServingError as e:
            context.abort(e.code, e.message)
        except Exception as e:
            logging.exception("Unexpected error in %s", method.__name__)
            context.abort(grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}")

    return handler


class _PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, model_server: ModelServer):
        self.Predict = _grpc_call(model_server.predict)
        self.GetModelMetadata = _grpc_call(model_server.get_model_metadata)


class _ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, model_server: ModelServer):
        self.GetModelStatus = _grpc_call(model_server.get_model_status)


def add_services(server: grpc.Server, model_server: ModelServer) -> None:
    """Adds both services, answered by ``model_server``, to a gRPC server."""
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        _PredictionServicer(model_server), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(_ModelServicer(model_server), server)
