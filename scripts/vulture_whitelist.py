"""Names the dead-code check (vulture, in scripts/check) cannot see used: a framework or library
reads them, by name or by attribute. Each line says who. Keep it small: code that nothing uses
is removed, not listed here. Decorated handlers (FastAPI routes, kopf handlers, pydantic
validators) are left out by ``ignore_decorators`` in pyproject.toml's [tool.vulture]."""

from vulture.whitelist_utils import Whitelist

_ = Whitelist()

# pydantic: the model's configuration, and fields only pydantic reads (the CRD's schema and its
# validation, the OpenAPI document's examples, a manifest's "schema" key).
_.model_config
_.protocol_version
_.version_status
_.predictions
_.schema_

# FastAPI calls app.openapi() to build the document (app.py replaces it).
_.openapi

# grpcio calls the servicer's methods by the protocol's RPC names (grpc_api.py).
_.ServerLive
_.ServerReady
_.ModelReady
_.ModelInfer

# asyncio calls a protocol's methods by name (tls_server.PlainHttpRefusal); uvicorn's shutdown
# reads Server.servers (server.DrainingServer.startup sets it).
_.connection_made
_.data_received
_.eof_received
_.connection_lost
_.servers

# Attributes set on library objects, read by the library: kopf's settings (handlers.py), ONNX
# Runtime's SessionOptions (models/onnx.py, models/warm.py), tarfile's TarInfo
# (storage/oci_image.py).
_.default_backoff
_.error_backoffs
_.error_delays
_.reconnect_backoff
_.server_timeout
_.intra_op_num_threads
_.inter_op_num_threads
_.graph_optimization_level
_.log_severity_level
_.optimized_model_filepath
_.mtime
_.gid
_.gname
_.uname

# The traceback parameter of __exit__ methods (the protocol names three parameters).
_.tb

# Entry points named in pyproject.toml ([project.entry-points."modelfleet.commands"]).
_.operator_command

# The client's public API for users (docs/client.md).
_.wait_ready

# A seam the scheduler's unit tests observe (tests/unit/operator/test_scheduler.py).
_.tracked

# asyncio calls a protocol's callbacks by name; uvicorn's request cycle reads the flag it is
# given when a slow client's connection is cut (http_limits.py).
_.data_received
_.eof_received
_.disconnected

# prometheus_client's registry calls a collector's collect at each scrape (metrics.TlsExpiry).
_.collect

# Python calls a module's __getattr__ for a name it lacks, and its __dir__ for dir() (PEP 562):
# the client package's lazy Client and AsyncClient (client/modelfleet_client/__init__.py).
_.__getattr__
_.__dir__

# uvicorn reads these: its HTTP/2 protocol closes a connection whose shutdown was requested once
# its streams are done, and its Server.shutdown waits this long for calls in flight (grpc_h2.py).
_.shutdown_requested
_.timeout_graceful_shutdown
