from __future__ import annotations

import grpc
from google.rpc import error_details_pb2

from driftloop.kit.errors import InvalidArgument, NotFound
from driftloop.kit.handlers import to_rpc_status


def test_invalid_argument_carries_the_field_as_a_bad_request_detail() -> None:
    status = to_rpc_status(InvalidArgument("rows[2].age", "NaN is not allowed"))
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT
    assert status.details == "rows[2].age: NaN is not allowed"
    rich = dict(status.trailing_metadata)["grpc-status-details-bin"]
    from google.rpc import status_pb2

    decoded = status_pb2.Status.FromString(rich)
    bad_request = error_details_pb2.BadRequest()
    assert decoded.details[0].Unpack(bad_request)
    assert bad_request.field_violations[0].field == "rows[2].age"
    assert bad_request.field_violations[0].description == "NaN is not allowed"


def test_other_errors_map_to_their_code() -> None:
    status = to_rpc_status(NotFound("model churn has no version 9"))
    assert status.code == grpc.StatusCode.NOT_FOUND
    assert status.details == "model churn has no version 9"
