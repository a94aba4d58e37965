"""The admin page (/hub/token-cache) as HTML: who may open it, the navigation link, an
operator's own templates. The browser tests (tests/browser) drive it for real."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from traitlets.config import Config

from .conftest import Hub
from .test_admin import OPERATOR_ROLE

#: The navigation link (MockHub's base URL is not /, so only its end).
LINK = '/hub/token-cache">Token cache</a>'


async def browse(hub: Hub, name: str) -> httpx.AsyncClient:
    """``name`` logged in, as a browser."""
    return await hub.login(name)


@pytest.mark.hub_config(JupyterHub__load_roles=[OPERATOR_ROLE])
async def test_the_custom_scope_opens_the_page_and_others_get_the_hub_403(hub: Hub) -> None:
    operator = await browse(hub, "operator")
    r = await operator.get("token-cache")
    assert r.status_code == 200 and 'id="token-cache"' in r.text
    assert r.headers["cache-control"] == "no-store"
    assert LINK in (await operator.get("home")).text  # the link is on the hub's own pages

    carol = await browse(hub, "carol")
    r = await carol.get("token-cache")
    assert r.status_code == 403 and "text/html" in r.headers["content-type"]
    assert "403 : Forbidden" in r.text
    assert "Requires admin:users or custom:token-cache:admin" in r.text
    assert LINK not in r.text and LINK not in (await carol.get("home")).text
    for client in (operator, carol):
        await client.aclose()


@pytest.fixture
def operator_templates(hub_config: Config, tmp_path: Path) -> Path:
    """An operator's own page.html (the usual kind: it extends the hub's default)."""
    (tmp_path / "page.html").write_text(
        '{% extends "templates/page.html" %}'
        "{% block footer %}<footer>the operator's footer</footer>{% endblock footer %}"
    )
    hub_config.JupyterHub.template_paths = [str(tmp_path)]
    return tmp_path


@pytest.mark.hub_config(JupyterHub__load_roles=[OPERATOR_ROLE])
async def test_an_operators_page_html_wins(operator_templates: Path, hub: Hub) -> None:
    operator = await browse(hub, "operator")
    home = (await operator.get("home")).text
    assert "the operator's footer" in home and LINK not in home
    r = await operator.get("token-cache")
    assert r.status_code == 200 and 'id="token-cache"' in r.text
    assert "the operator's footer" in r.text
    await operator.aclose()
