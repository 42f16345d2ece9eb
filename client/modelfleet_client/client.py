"""``Client`` and ``AsyncClient``: numpy arrays in, numpy arrays out, from any server that
speaks the Open Inference Protocol (tested against ModelFleet, KServe and MLServer).

The URL picks the wire: ``http://`` and ``https://`` the REST binding (``rest.py``, binary
tensors by default), ``grpc://`` and ``grpcs://`` the gRPC one (``rpc.py``, needs the ``grpc``
extra). Both clients build the same ``Call`` objects and differ only in how they wait, so
everything below the public methods is shared.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from modelfleet_client import tensors
from modelfleet_client.calls import Arrays, AsyncTransport, Calls, Transport
from modelfleet_client.errors import InferenceServerError
from modelfleet_client.http_async import AsyncRestTransport
from modelfleet_client.http_blocking import RestTransport
from modelfleet_client.rest import RestCalls
from modelfleet_client.retry import Backoff
from modelfleet_client.tls import Cert, TlsFiles

Inputs = Mapping[str, Any] | np.ndarray[Any, Any]
"""Input name -> array (anything ``numpy.asarray`` takes), or one array for a model with a
single input."""
SCHEMES = ("http", "https", "grpc", "grpcs")


class _Base:
    """What both clients share: the URL, the protocol's calls, the input-name cache."""

    def __init__(self, url: str, retries: int, binary: bool) -> None:
        parts = urlsplit(url)
        if parts.scheme not in SCHEMES or not parts.hostname:
            raise ValueError(f"url must be http://, https://, grpc:// or grpcs://HOST, got {url!r}")
        if parts.scheme.startswith("grpc") and parts.path.strip("/"):
            raise ValueError(f"a gRPC url has no path, got {url!r}")
        self.url = url
        self.scheme, self.target = parts.scheme, parts.netloc
        self.backoff = Backoff(retries)
        self._calls: Calls = (
            RestCalls(binary) if self.scheme.startswith("http") else _rpc().RpcCalls()
        )
        self._single: dict[tuple[str, str | None], str] = {}

    def transport(
        self,
        rest: type,
        rpc: Callable[[Any], type],
        token: str | None,
        timeout: float | None,
        tls: TlsFiles,
    ) -> Any:
        """The transport for this URL: the ``rest`` class, or ``rpc(the rpc module)``'s for
        gRPC (imported only then: it needs the grpc extra)."""
        secure = self.scheme in ("https", "grpcs")
        if tls.cert is not None and not secure:
            raise ValueError(
                f"a client certificate needs an https:// or grpcs:// url, got {self.url!r}"
            )
        if self.scheme.startswith("http"):
            context = tls.context() if secure else None
            return rest(self.url, token, timeout, self.backoff, context)
        make = rpc(_rpc())
        return make(self.target, token, timeout, self.backoff, tls=tls if secure else None)

    def _arrays(self, inputs: Inputs, single: str | None) -> dict[str, np.ndarray[Any, Any]]:
        """``inputs`` as arrays the protocol has datatypes for (else 400, nothing sent)."""
        arrays = {}
        pairs = inputs.items() if isinstance(inputs, Mapping) else [(str(single), inputs)]
        for name, value in pairs:
            array = np.asarray(value)
            try:
                tensors.datatype_of(array)
            except ValueError as exc:
                raise InferenceServerError(400, f"input '{name}': {exc}") from None
            arrays[name] = array
        return arrays

    def _remember(self, model: str, version: str | None, metadata: dict[str, Any]) -> str:
        names = [str(spec.get("name")) for spec in metadata.get("inputs") or ()]
        if len(names) != 1:
            raise InferenceServerError(
                400, f"model '{model}' has inputs {names}: pass a dict of input name to array"
            )
        self._single[model, version] = names[0]
        return names[0]


def _pick(found: Arrays, outputs: Sequence[str] | None) -> Arrays:
    """The outputs asked for, even from a server that sends all of them (KServe's gRPC)."""
    if outputs is None or found.keys() == set(outputs):
        return found
    missing = [name for name in outputs if name not in found]
    if missing:
        raise InferenceServerError(502, f"the server's answer lacks the outputs {missing}")
    return {name: found[name] for name in outputs}


def _version(version: int | str | None) -> str | None:
    return None if version is None else str(version)


def _rpc() -> Any:
    try:
        from modelfleet_client import rpc
    except ImportError as exc:
        raise ImportError(
            f"grpc:// URLs need the grpc extra (pip install 'modelfleet-client[grpc]'): {exc}"
        ) from exc
    return rpc


class Client:
    """A blocking client, safe to share between threads (one connection pool or channel).

    ``url``: ``http[s]://HOST[:PORT][/PREFIX]`` or ``grpc[s]://HOST:PORT``. ``token``: a
    bearer token sent with every call. ``timeout``: seconds to connect and for each read
    (None: no limit). ``retries``: how many times a call answered 503 / UNAVAILABLE, or whose
    server did not take the connection, is tried again, with exponential backoff and jitter,
    waiting as long as a ``Retry-After`` asks; other errors are raised at once.
    ``binary=False`` sends JSON tensors over HTTP (for servers without the binary extension).
    ``ca_file``: a PEM bundle to trust for https:// and grpcs:// (default: the system's).
    ``cert``: the client's certificate for a server that asks for one (mutual TLS), as
    requests and httpx take it: a PEM file holding the certificate and its key, or a pair
    (certificate file, key file).
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        timeout: float | None = 30.0,
        retries: int = 3,
        *,
        binary: bool = True,
        ca_file: str | None = None,
        cert: Cert | None = None,
    ) -> None:
        self._base = _Base(url, retries, binary)
        self._transport: Transport = self._base.transport(
            RestTransport, lambda rpc: rpc.RpcTransport, token, timeout, TlsFiles(ca_file, cert)
        )

    def __repr__(self) -> str:  # the URL only: never the token
        return f"Client({self._base.url!r})"

    def infer(
        self,
        model: str,
        inputs: Inputs,
        *,
        version: int | str | None = None,
        outputs: Sequence[str] | None = None,
    ) -> Arrays:
        """Run ``model`` (its newest version, or ``version``) on ``inputs``; its outputs by
        name (only ``outputs`` if given). Binary outputs are read-only views of the answer:
        ``.copy()`` one to change it. BYTES come back as object arrays of ``bytes``."""
        v = _version(version)
        single = None if isinstance(inputs, Mapping) else self._single_input(model, v)
        arrays = self._base._arrays(inputs, single)
        found = self._transport.run(self._base._calls.infer(model, v, arrays, outputs))
        return _pick(found, outputs)

    def _single_input(self, model: str, version: str | None) -> str:
        name = self._base._single.get((model, version))
        if name is None:
            meta = self._transport.run(self._base._calls.metadata(model, version))
            name = self._base._remember(model, version, meta)
        return name

    def ready(self, model: str | None = None, *, version: int | str | None = None) -> bool:
        """Whether the server (or ``model``) is ready now; False also when it does not answer.
        Never retried."""
        return self._readiness(model, _version(version)) is None

    def _readiness(self, model: str | None, version: str | None) -> InferenceServerError | None:
        try:
            self._transport.run(self._base._calls.ready(model, version), retry=False)
        except InferenceServerError as exc:
            return exc
        return None

    def wait_ready(
        self, timeout: float = 60.0, model: str | None = None, *, version: int | str | None = None
    ) -> None:
        """Return once the server (or ``model``) is ready; after ``timeout`` seconds raise the
        last reason it was not."""
        deadline, pause = time.monotonic() + timeout, 0.05
        while (problem := self._readiness(model, _version(version))) is not None:
            if time.monotonic() + pause > deadline:
                raise InferenceServerError(
                    problem.status, f"not ready after {timeout} s: {problem.message}"
                )
            time.sleep(pause)
            pause = min(pause * 2, 1.0)

    def metadata(self, model: str, *, version: int | str | None = None) -> dict[str, Any]:
        """The model's metadata: ``name``, ``versions``, ``platform``, ``inputs`` and
        ``outputs`` (each ``{"name", "datatype", "shape"}``, -1 for a dynamic dimension)."""
        return self._transport.run(self._base._calls.metadata(model, _version(version)))

    def server_metadata(self) -> dict[str, Any]:
        """The server's ``name``, ``version`` and protocol ``extensions``."""
        return self._transport.run(self._base._calls.server_metadata())

    def models(self) -> list[dict[str, Any]]:
        """The server's models and versions (``POST /v2/repository/index``): a list of
        ``{"name", "version", "state", "reason"}`` as the server words them. Over gRPC the
        protocol has no such call: raises 501."""
        return self._transport.run(self._base._calls.models())

    def close(self) -> None:
        """Close the connections (the client is unusable afterwards)."""
        self._transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class AsyncClient:
    """``Client`` for asyncio: the same arguments and methods, awaited. One connection pool
    (HTTP) or channel (gRPC) serves every concurrent call; use it from one event loop."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        timeout: float | None = 30.0,
        retries: int = 3,
        *,
        binary: bool = True,
        ca_file: str | None = None,
        cert: Cert | None = None,
    ) -> None:
        self._base = _Base(url, retries, binary)
        self._transport: AsyncTransport = self._base.transport(
            AsyncRestTransport,
            lambda rpc: rpc.AsyncRpcTransport,
            token,
            timeout,
            TlsFiles(ca_file, cert),
        )
        self._lookups: dict[tuple[str, str | None], asyncio.Future[dict[str, Any]]] = {}

    def __repr__(self) -> str:  # the URL only: never the token
        return f"AsyncClient({self._base.url!r})"

    async def infer(
        self,
        model: str,
        inputs: Inputs,
        *,
        version: int | str | None = None,
        outputs: Sequence[str] | None = None,
    ) -> Arrays:
        """See ``Client.infer``."""
        v = _version(version)
        single = None if isinstance(inputs, Mapping) else await self._single_input(model, v)
        arrays = self._base._arrays(inputs, single)
        found = await self._transport.run(self._base._calls.infer(model, v, arrays, outputs))
        return _pick(found, outputs)

    async def _single_input(self, model: str, version: str | None) -> str:
        """The input's name, from metadata fetched once even when many calls start at once."""
        key = (model, version)
        name = self._base._single.get(key)
        if name is None:
            lookup = self._lookups.get(key)
            if lookup is None:
                call = self._base._calls.metadata(model, version)
                lookup = self._lookups[key] = asyncio.ensure_future(self._transport.run(call))
                lookup.add_done_callback(lambda _: self._lookups.pop(key, None))
            name = self._base._remember(model, version, await asyncio.shield(lookup))
        return name

    async def ready(self, model: str | None = None, *, version: int | str | None = None) -> bool:
        """See ``Client.ready``."""
        return await self._readiness(model, _version(version)) is None

    async def _readiness(
        self, model: str | None, version: str | None
    ) -> InferenceServerError | None:
        try:
            await self._transport.run(self._base._calls.ready(model, version), retry=False)
        except InferenceServerError as exc:
            return exc
        return None

    async def wait_ready(
        self, timeout: float = 60.0, model: str | None = None, *, version: int | str | None = None
    ) -> None:
        """See ``Client.wait_ready``."""
        deadline, pause = time.monotonic() + timeout, 0.05
        while (problem := await self._readiness(model, _version(version))) is not None:
            if time.monotonic() + pause > deadline:
                raise InferenceServerError(
                    problem.status, f"not ready after {timeout} s: {problem.message}"
                )
            await asyncio.sleep(pause)
            pause = min(pause * 2, 1.0)

    async def metadata(self, model: str, *, version: int | str | None = None) -> dict[str, Any]:
        """See ``Client.metadata``."""
        return await self._transport.run(self._base._calls.metadata(model, _version(version)))

    async def server_metadata(self) -> dict[str, Any]:
        """See ``Client.server_metadata``."""
        return await self._transport.run(self._base._calls.server_metadata())

    async def models(self) -> list[dict[str, Any]]:
        """See ``Client.models``."""
        return await self._transport.run(self._base._calls.models())

    async def aclose(self) -> None:
        """Close the connections (the client is unusable afterwards)."""
        await self._transport.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()
