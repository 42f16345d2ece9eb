"""What the operator asks the API server once, at start-up, to finish its settings.

Called by the start-up handler (``handlers.py``): a setting left unset (``gateway_api``,
``server_version``) is decided from what the cluster serves; one that is set is used without
asking. The offline ``modelfleet render`` cannot ask and keeps them unset.
"""

from __future__ import annotations

import logging

import kopf

from modelfleet_operator.config import OperatorConfig, version_from_info
from modelfleet_operator.kube import KubeClient
from modelfleet_operator.render.delivery import auto_delivery

GATEWAY_API = "gateway.networking.k8s.io/v1"
log = logging.getLogger(__name__)


async def detect_gateway_api(config: OperatorConfig, client: KubeClient) -> OperatorConfig:
    """``config`` with ``gateway_api`` decided: as set, else whether HTTPRoutes are served."""
    if config.gateway_api is not None:
        return config
    served = await client.serves(GATEWAY_API, "httproutes")
    log.info(
        "Gateway API %s: HTTPRoutes %s rendered for canary traffic.",
        "found" if served else "not found",
        "are" if served else "are not",
    )
    return config.model_copy(update={"gateway_api": served})


async def detect_server_version(config: OperatorConfig, client: KubeClient) -> OperatorConfig:
    """``config`` with ``server_version`` decided: as set, else the API server's own (which
    decides ``ociDelivery: Auto``); refused or unreadable, it stays unset and Auto means Pull
    (a temporary error fails the start-up handler, which kopf retries)."""
    if config.server_version is not None:
        return config
    try:
        info = await client.version()
    except kopf.PermanentError as exc:  # a cluster that hides /version (403): not fatal
        log.warning("No API server version (%s): ociDelivery Auto means Pull.", exc)
        return config
    try:
        version = version_from_info(info)
    except ValueError:
        log.warning("The API server's version %r is unreadable: ociDelivery Auto means Pull.", info)
        return config
    log.info("API server %s: ociDelivery Auto means %s.", version, auto_delivery(version))
    return config.model_copy(update={"server_version": version})


async def discover(config: OperatorConfig, client: KubeClient) -> OperatorConfig:
    """``config`` with every setting that start-up may decide, decided."""
    return await detect_server_version(await detect_gateway_api(config, client), client)
