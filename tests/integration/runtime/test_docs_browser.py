"""``/docs`` in a real browser: headless Chromium (Debian's ``chromium``, which scripts/test
installs), driven by playwright, against ``modelfleet serve`` (the bundled iris) as a real
uvicorn process on 127.0.0.1. The page renders the OpenAPI 3.1 document, lists the inference
operations, fetches nothing from outside the server, and "Try it out" -> "Execute" on the
inference call answers 200 as it stands (the document's example is a request iris accepts).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, Route, expect, sync_playwright

from tests.helpers.runtime import Served, serve_process

INFERENCE = [
    "/v2/models/{name}/infer",
    "/v2/models/{name}/versions/{version}/infer",
    "/v1/models/{name}:predict",
]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with serve_process(tmp_path, "--grpc-port", "0") as served:
        yield served


@pytest.fixture
def page() -> Iterator[Page]:
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is needed (scripts/test installs it)"
    with sync_playwright() as playwright:
        # --no-sandbox: Chromium's sandbox needs user namespaces, which CI's root lacks.
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            yield browser.new_page()
        finally:
            browser.close()


def test_docs_list_the_inference_operations_and_try_it_out_answers_200(
    served: Served, page: Page
) -> None:
    outside: list[str] = []

    def only_loopback(route: Route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_loopback)
    page.goto(f"{served.url}/docs")
    for path in INFERENCE:
        expect(page.locator(f'.opblock-summary-path[data-path="{path}"]')).to_be_visible()
    expect(page.get_by_text("Unable to render this definition")).to_have_count(0)

    infer = page.locator(".opblock").filter(
        has=page.locator('.opblock-summary-path[data-path="/v2/models/{name}/infer"]')
    )
    infer.locator(".opblock-summary").click()
    infer.get_by_role("button", name="Try it out").click()
    expect(infer.locator('input[placeholder="name"]')).to_have_value("iris")
    infer.get_by_role("button", name="Execute").click()
    status = infer.locator(".live-responses-table .response .response-col_status")
    expect(status).to_have_text("200", timeout=30_000)
    expect(infer.locator(".live-responses-table .response .microlight").first).to_contain_text(
        "label"
    )
    assert outside == []
