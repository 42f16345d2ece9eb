"""The ModelFleet client: call a model served over the Open Inference Protocol from Python.

    from modelfleet_client import Client
    with Client("http://127.0.0.1:8080") as client:
        outputs = client.infer("iris", {"input": features})

``Client`` blocks, ``AsyncClient`` awaits; both speak HTTP/REST (binary tensors) or gRPC,
picked by the URL's scheme. Every failure is an ``InferenceServerError``. ``docs/client.md``
has the whole tour.
"""

from modelfleet_client.client import AsyncClient, Client
from modelfleet_client.errors import InferenceServerError

__all__ = ["AsyncClient", "Client", "InferenceServerError", "__version__"]
__version__ = "0.1.0"
