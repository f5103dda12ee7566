"""The Salesforce Pub/Sub API contract (`core/proto/pubsub_api.proto`), loaded as Python modules.

Both sides of the wire load the same file: the bridge (connectors/salesforce_pubsub.py) as a client and
the sandbox (sandbox/pubsub.py) as the server that plays Salesforce, so they cannot disagree on a field
number. It sits in `core` because the sandbox may import nothing else.

Why compiled at import (`grpc.protos_and_services`, grpcio-tools) rather than generated `*_pb2.py`
kept in the repository: the `.proto` is then the only source, there is no generated code to fall out
of step with it or to exempt from the linters, and the cost is a few milliseconds once per process.

`pb` holds the messages (`pb.FetchRequest`, `pb.ReplayPreset.Value("CUSTOM")`, ...), `services` the stubs
(`services.PubSubStub`) and the servicer base (`services.PubSubServicer`,
`services.add_PubSubServicer_to_server`). Both are untyped (`Any`): protobuf builds the classes at run time.

Metadata keys and the error codes Salesforce puts in a failed call's trailers (`error-code`) are here too:
the sandbox raises them and the bridge recognises them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Final

PROTO_DIR: Final = Path(__file__).parent / "proto"
PROTO_FILE: Final = "pubsub_api.proto"

# Authentication metadata of every call (gRPC metadata keys are lower case).
ACCESS_TOKEN_KEY: Final = "accesstoken"
INSTANCE_URL_KEY: Final = "instanceurl"
TENANT_ID_KEY: Final = "tenantid"
# Trailer naming Salesforce's own error code of a failed call.
ERROR_CODE_KEY: Final = "error-code"
# A replay id the event bus cannot resume from (too old: outside the retention window, or not one of
# its ids), with status INVALID_ARGUMENT (Pub/Sub API guide, "Retry Long-Lived RPC Calls").
REPLAY_ID_CORRUPTED: Final = "sfdc.platform.eventbus.grpc.subscription.fetch.replayid.corrupted"
# A session the org does not accept (expired, revoked), with status UNAUTHENTICATED.
AUTH_ERROR: Final = "sfdc.platform.eventbus.grpc.service.auth.error"


def _load() -> tuple[Any, Any]:
    import grpc

    # protoc resolves the file on sys.path; the directory is put there only while it compiles.
    sys.path.insert(0, str(PROTO_DIR))
    try:
        return grpc.protos_and_services(PROTO_FILE)
    finally:
        sys.path.remove(str(PROTO_DIR))


pb, services = _load()
