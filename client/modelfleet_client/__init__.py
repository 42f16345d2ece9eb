"""The ModelFleet client: call a model served over the Open Inference Protocol from Python.

    from modelfleet_client import Client
    with Client("http://127.0.0.1:8080") as client:
        outputs = client.infer("iris", {"input": features})

``Client`` blocks, ``AsyncClient`` awaits; both speak HTTP/REST (binary tensors) or gRPC,
picked by the URL's scheme. Every failure is an ``InferenceServerError``. ``docs/client.md``
has the whole tour.

``Client`` and ``AsyncClient`` are imported on first use (PEP 562): the runtime imports this
package for its tensor codec and gRPC messages only, and the clients' own imports (httpx and
the transports) cost every server start about 24 ms (``python -X importtime``).
"""

from typing import TYPE_CHECKING, Any

from modelfleet_client.errors import InferenceServerError

if TYPE_CHECKING:
    from modelfleet_client.client import AsyncClient, Client

__all__ = ["AsyncClient", "Client", "InferenceServerError", "__version__"]
__version__ = "0.1.0"


if not TYPE_CHECKING:  # type checkers see the imports above, and a misspelt name stays an error

    def __getattr__(name: str) -> Any:
        if name in ("AsyncClient", "Client"):
            from modelfleet_client import client

            return getattr(client, name)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
