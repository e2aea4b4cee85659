"""The dashboard's ES modules (service/static/*.js, no build step): every import resolves to a file that
exports the name, every module is reachable from the entry module, and each is served with a JavaScript
MIME type (browsers refuse to run a module script served as anything else). The browser test
(test_dashboard.py) runs them for real; this one needs no browser, server or dataset."""

from __future__ import annotations

import re

from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.api.routers import dashboard

STATIC = dashboard.STATIC
IMPORT = re.compile(r'^import \{([^}]*)\} from "\./([\w.-]+\.js)";$', re.M)
EXPORT = re.compile(r"^export (?:async function|function|const|let|class) ([\w$]+)", re.M)


def modules() -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(STATIC.glob("*.js"))}


def test_index_loads_the_entry_module() -> None:
    scripts = re.findall(r"<script[^>]*>", (STATIC / "index.html").read_text())
    assert scripts == ['<script type="module" src="/static/app.js">'], scripts


def test_imports_resolve_to_exported_names() -> None:
    mods = modules()
    assert len(mods) > 5, "app.js is split into an API client, charts and one module per view"
    for name, text in mods.items():
        assert "require(" not in text and not re.search(r"^import .* from \"(?!\./)", text, re.M), name
        for names, target in IMPORT.findall(text):
            assert target in mods, f"{name} imports {target}, which is not in {STATIC}"
            exported = set(EXPORT.findall(mods[target]))
            for imported in (n.strip() for n in names.split(",")):
                assert imported in exported, f"{name} imports {imported} from {target}, which does not export it"
        # an import line this pattern does not read would escape the check above
        assert len(IMPORT.findall(text)) == len(re.findall(r"^import ", text, re.M)), f"{name}: unreadable import"


def test_every_module_is_reachable_from_the_entry() -> None:
    mods = modules()
    seen, todo = set(), ["app.js"]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += [target for _, target in IMPORT.findall(mods[name])]
    assert seen == set(mods), f"never loaded: {set(mods) - seen}"


def test_modules_are_served_as_javascript() -> None:
    app = FastAPI()
    app.mount("/static", dashboard.static_files())
    client = TestClient(app)
    for name in modules():
        response = client.get(f"/static/{name}")
        assert response.status_code == 200, name
        assert response.headers["content-type"].startswith(("text/javascript", "application/javascript")), (
            f"{name}: {response.headers['content-type']}"
        )
