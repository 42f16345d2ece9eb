"""``oci://`` model storage: a model kept as an OCI image in a container registry.

``oci://HOST[:PORT]/REPO[:TAG]`` or ``oci://HOST[:PORT]/REPO@sha256:HEX`` (tag default
``latest``), the way KServe's modelcar URIs name images; HTTPS only. ``open_source`` opens an
``OciStore`` whose one key is the image's layer, so the version layout, promotion and unpacking
are ``layout.py``'s and ``archive.py``'s as for any archive: the image is served as version 1.
``push`` (called by ``modelfleet models push``) uploads a model as such an image.

Each poll resolves the tag with a HEAD (registries do not count it as a pull); the version's
fingerprint is the image manifest's digest, so a tag moved to a new image is swapped in on the
next poll, and a pinned digest, once fetched, is never downloaded again. A fetch reads the
manifest by digest, then the config and the layer, each checked against its sha256 while it
streams, and the uncompressed layer against the config's diff_id (``oci_image.check_layer``).

Hand-written over the runtime's urllib3 client (``oci_http.py``) rather than oras-py: oras-py
writes blobs to disk without checking their digest and reads a whole blob into memory to push
it, brings requests and jsonschema, retries on its own schedule, and follows redirects to any
host. Here the protocol is a handful of calls (HEAD/GET manifest, GET blob, POST+PUT upload,
PUT manifest), and owning them keeps one retry policy (``retry.py``), the host allow-list on
token realms and blob redirects, ``registry_ca_file`` for TLS, and per-blob digest checks.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path

from ..config import Settings
from ..schemes import OCI_FORM, OciRef, OciReferenceError, oci_reference
from . import oci_image
from .base import InvalidUriError, NotFoundError, ObjectInfo, ProgressFn, StorageError
from .oci_distribution import OciRepository, sha256_digest
from .uri import ParsedUri, check_hosts, check_scheme, parse_uri

log = logging.getLogger(__name__)

KEY = "layer.tar"
"""The store's one key: the image's layer, which ``layout.py`` unpacks as an archive (tarfile
detects the compression itself)."""
_CACHED_IMAGES = 8


def parse_reference(parsed: ParsedUri) -> OciRef:
    """Check an ``oci://`` URI against the distribution spec's grammar (``schemes.py``)."""
    where = f"oci://{parsed.netloc}{parsed.path}"
    if parsed.query:
        raise InvalidUriError(f"{where}: an oci:// URI has no query; use {OCI_FORM}")
    try:
        return oci_reference(parsed.netloc, parsed.path.lstrip("/"))
    except OciReferenceError as exc:
        raise InvalidUriError(f"{where} {exc}; use {OCI_FORM}") from None


class OciStore:
    """One image in a registry, seen as a store holding one object: its layer."""

    ranged = False

    def __init__(self, ref: OciRef, settings: Settings) -> None:
        self._ref = ref
        self._repo = OciRepository(ref.host, ref.repository, settings)
        self.location = ref.uri
        self.hosts: tuple[str, ...] = (ref.host,)
        self._images: dict[str, oci_image.Image] = {}  # manifest or index digest -> image
        self._current: oci_image.Image | None = None
        self._lock = threading.Lock()

    def _check_key(self, key: str) -> None:
        if key != KEY:
            raise NotFoundError(f"{self.location}: an image holds no object {key!r}")

    def list(self, prefix: str) -> list[ObjectInfo]:
        """The layer, when its key starts with ``prefix``."""
        return [self.stat(KEY)] if KEY.startswith(prefix) else []

    def stat(self, key: str) -> ObjectInfo:
        """Resolve the tag; the layer's size, with the image manifest's digest as etag."""
        self._check_key(key)
        image = self._resolve()
        return ObjectInfo(key, image.layer.size, image.digest)

    def _resolve(self) -> oci_image.Image:
        top = self._ref.digest or self._repo.resolve(self._ref.tag or "latest")
        with self._lock:
            image = self._images.get(top)
        if image is None:
            image = self._fetch_image(top)
        with self._lock:
            if len(self._images) >= _CACHED_IMAGES:
                self._images.clear()
            self._images[top] = image
            self._current = image
        return image

    def _fetch_image(self, digest: str) -> oci_image.Image:
        where = f"{self._repo.where}@{digest}"
        data, media_type = self._repo.manifest(digest)
        if oci_image.is_index(data, media_type, where):
            digest = oci_image.pick_manifest(data, where).digest
            where = f"{self._repo.where}@{digest}"
            data, media_type = self._repo.manifest(digest)
            if oci_image.is_index(data, media_type, where):
                raise StorageError(f"{where}: an index inside an index", reason="InvalidImage")
        return oci_image.parse_image(data, digest, where)

    def download(
        self, key: str, dest: Path, *, offset: int, length: int | None, progress: ProgressFn
    ) -> None:
        """Fetch the config and the layer of the image ``stat`` resolved, verifying both."""
        self._check_key(key)
        assert offset == 0 and length is None, "an OciStore is not ranged"
        with self._lock:
            image = self._current
        if image is None:
            image = self._resolve()
        where = f"{self._repo.where}@{image.digest}"
        config = self._repo.read_blob(image.config.digest, image.config.size)
        expected = oci_image.diff_id(config, where)
        self._repo.download_blob(image.layer.digest, image.layer.size, dest, progress)
        oci_image.check_layer(dest, image.layer.media_type, expected, where)


def open_store(parsed: ParsedUri, settings: Settings) -> tuple[OciStore, str | None]:
    """The store for an ``oci://`` URI (no network call); its one key is the layer."""
    return OciStore(parse_reference(parsed), settings), KEY


def push(uri: str, files: Mapping[str, Path], settings: Settings) -> str:
    """Push ``files`` (name in the image -> local file; ``model.onnx`` among them) as a model
    image tagged as ``uri`` says; return ``oci://host/repo@sha256:<manifest digest>``.

    Blocking. Blobs the registry already holds are not sent again, so a push that failed
    half-way (it is not retried) costs little to run again.
    """
    parsed = parse_uri(uri)
    check_scheme(parsed, settings.allowed_schemes)
    if parsed.scheme != "oci":
        raise InvalidUriError(f"{parsed.redacted}: not an oci:// URI; use {OCI_FORM}")
    ref = parse_reference(parsed)
    check_hosts(ref.uri, [ref.host], settings.allowed_hosts)
    if ref.digest is not None:
        raise InvalidUriError(f"{ref.uri}: push to a tag (the digest is the push's result)")
    if "model.onnx" not in files:
        raise InvalidUriError(f"{ref.uri}: a model image needs a file named model.onnx")
    repo = OciRepository(ref.host, ref.repository, settings, push=True)
    with tempfile.TemporaryDirectory(prefix="modelfleet-push-") as folder:
        layer_path, config_path = Path(folder) / "layer.tar.gz", Path(folder) / "config.json"
        try:
            layer, diff_id = oci_image.build_layer(files, layer_path, where=ref.uri)
        except OSError as exc:
            raise StorageError(
                f"{ref.uri}: cannot read the model's files: {exc.strerror or exc} ({exc.filename})",
                reason="LocalReadFailed",
            ) from None
        config_path.write_bytes(oci_image.config_bytes(diff_id))
        config = oci_image.Descriptor(
            oci_image.CONFIG_TYPE,
            sha256_digest(config_path.read_bytes()),
            config_path.stat().st_size,
        )
        for blob, path in ((layer, layer_path), (config, config_path)):
            if not repo.blob_exists(blob.digest):
                repo.upload_blob(path, blob.digest)
        title = ref.repository.rsplit("/", 1)[-1]
        manifest = oci_image.manifest_bytes(config, layer, title)
        digest = repo.put_manifest(ref.tag or "latest", manifest, oci_image.OCI_MANIFEST)
    pinned = f"oci://{ref.host}/{ref.repository}@{digest}"
    log.info("pushed %s as %s", ref.uri, pinned)
    return pinned
