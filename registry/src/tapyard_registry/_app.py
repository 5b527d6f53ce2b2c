"""The registry's ASGI application: the JSON API, the TUF files, the artifacts and the catalog.

Reads need no login. Every write needs a publisher token (``Authorization:
Bearer tyr_...``) with the right scope and is rate limited per token
(registration per client address). Errors are JSON ``{"error": "..."}`` with
one line that says what to do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from tapyard_registry._service import Publisher, Refused, Registry

__all__ = ["create_app"]

_JSON_LIMIT = 64 * 1024
_background: set[Any] = set()


def _error(exc: Refused) -> JSONResponse:
    body: dict[str, Any] = {"error": str(exc)}
    headers = {}
    if exc.report is not None:
        body["report"] = exc.report
        if exc.status == 429 and isinstance(exc.report, dict):
            headers["Retry-After"] = str(exc.report.get("retry_after", 1))
            body.pop("report")
    return JSONResponse(body, status_code=exc.status, headers=headers)


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > _JSON_LIMIT:
        raise Refused(413, "the request body is too large")
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise Refused(400, "the request body must be a JSON object") from None
    if not isinstance(body, dict):
        raise Refused(400, "the request body must be a JSON object")
    return body


def create_app(registry: Registry) -> Starlette:
    """The registry's application over ``registry``."""
    from starlette.concurrency import run_in_threadpool

    from tapyard_registry._catalog import Catalog

    catalog = Catalog(registry)

    def guarded(scope: str | None, handler: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            try:
                who = None
                if scope is not None:
                    who = await run_in_threadpool(registry.authenticate, request.headers.get("authorization"), scope)
                response: Response = await handler(request, who)
                return response
            except Refused as exc:
                return _error(exc)

        return endpoint

    async def register(request: Request, _who: None) -> Response:
        registry.throttle(f"ip:{request.client.host if request.client else '?'}")
        body = await _json_body(request)
        result = await run_in_threadpool(
            registry.register, str(body.get("namespace") or ""), body.get("public_key"), str(body.get("display_name") or "")
        )
        return JSONResponse(result, status_code=201)

    async def add_key(request: Request, who: Publisher) -> Response:
        body = await _json_body(request)
        return JSONResponse(await run_in_threadpool(registry.add_key, who, body.get("public_key")), status_code=201)

    async def revoke_key(request: Request, who: Publisher) -> Response:
        return JSONResponse(await run_in_threadpool(registry.revoke_key, who, request.path_params["keyid"]))

    async def create_token(request: Request, who: Publisher) -> Response:
        body = await _json_body(request)
        result = await run_in_threadpool(registry.create_token, who, body.get("scopes"), str(body.get("description") or ""))
        return JSONResponse(result, status_code=201)

    async def list_tokens(request: Request, who: Publisher) -> Response:
        return JSONResponse(await run_in_threadpool(registry.list_tokens, who))

    async def revoke_token(request: Request, who: Publisher) -> Response:
        return JSONResponse(await run_in_threadpool(registry.revoke_token, who, request.path_params["token_id"]))

    async def whoami(request: Request, who: Publisher) -> Response:
        return JSONResponse({"namespace": who.namespace, "scopes": sorted(who.scopes), "token_id": who.token_id})

    async def role(request: Request, _who: None) -> Response:
        data = await run_in_threadpool(registry.delegated_role, request.path_params["namespace"])
        if data is None:
            return JSONResponse({"error": "this namespace has published nothing yet"}, status_code=404)
        return Response(data, media_type="application/json")

    async def upload(request: Request, who: Publisher) -> Response:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > registry.max_upload + _JSON_LIMIT * 4:
            raise Refused(413, f"the upload is larger than the {registry.max_upload} bytes this registry accepts")
        async with request.form(max_files=3, max_fields=4, max_part_size=registry.max_upload + 1) as form:
            wheel = form.get("wheel")
            signed = form.get("role")
            source = form.get("source")
            if wheel is None or isinstance(wheel, str) or signed is None:
                raise Refused(400, "an upload is a form with a 'wheel' file, its signed 'role' metadata and its 'source'")
            data = await wheel.read(registry.max_upload + 1)
            role_bytes = (await signed.read()) if not isinstance(signed, str) else signed.encode()
            source_bytes = await source.read(registry.max_upload + 1) if source is not None and not isinstance(source, str) else None
            filename = wheel.filename or ""
        result = await run_in_threadpool(registry.publish, who, filename, data, role_bytes, source_bytes)
        return JSONResponse(result, status_code=201)

    async def yank(request: Request, who: Publisher) -> Response:
        body = await _json_body(request)
        flag = request.url.path.endswith("/yank")
        result = await run_in_threadpool(
            registry.yank, who, request.path_params["name"], request.path_params["version"], flag, str(body.get("reason") or "")
        )
        return JSONResponse(result)

    async def search(request: Request, _who: None) -> Response:
        params = request.query_params
        try:
            limit = min(max(int(params.get("limit", "50")), 1), 500)
        except ValueError:
            raise Refused(400, "limit must be a whole number") from None
        filters = {k: params[k] for k in ("vendor", "category", "auth", "level", "publisher") if params.get(k)}
        if registry.listing_stale():
            rebuild = run_in_threadpool(registry.rebuild_listing, wait=registry._listing is None)
            if registry._listing is None:
                await rebuild  # the first search after a write builds the index
            else:
                # searches keep the current index while a newer one is read
                import asyncio

                task = asyncio.ensure_future(rebuild)
                _background.add(task)
                task.add_done_callback(_background.discard)
        # answered on the event loop: an index lookup costs less than a hop to the thread pool
        return Response(registry.search_json(params.get("q", "")[:200], filters, limit), media_type="application/json")

    async def index(request: Request, _who: None) -> Response:
        summaries, _index, _encoded = await run_in_threadpool(registry.listing)
        return JSONResponse({"packages": summaries})

    async def package(request: Request, _who: None) -> Response:
        document = await run_in_threadpool(registry.package, request.path_params["name"])
        if document is None:
            return JSONResponse({"error": f"no package named {request.path_params['name'][:100]!r}"}, status_code=404)
        document = dict(document)
        document.pop("summary_release", None)
        return JSONResponse(document)

    async def tuf_file(request: Request, _who: None) -> Response:
        name = request.path_params["name"]

        def read() -> bytes | None:
            with registry.engine.connect() as connection:
                return registry.repo.file(connection, name)

        data = await run_in_threadpool(read)
        if data is None:
            return Response(status_code=404)
        headers = {"Cache-Control": "no-cache" if name == "timestamp.json" else "public, max-age=31536000, immutable"}
        return Response(data, media_type="application/json", headers=headers)

    async def artifact(request: Request, _who: None) -> Response:
        path = f"{request.path_params['package']}/{request.path_params['filename']}"
        data = await run_in_threadpool(registry.store.get, path)
        if data is None:
            return Response(status_code=404)
        return Response(data, media_type="application/octet-stream")

    async def home(request: Request) -> Response:
        return HTMLResponse(await run_in_threadpool(catalog.home, request.query_params))

    async def connector_page(request: Request) -> Response:
        html = await run_in_threadpool(catalog.package_page, request.path_params["name"])
        if html is None:
            return HTMLResponse(await run_in_threadpool(catalog.not_found, request.path_params["name"]), status_code=404)
        return HTMLResponse(html)

    routes = [
        Route("/", home),
        Route("/c/{name}", connector_page),
        Route("/api/v1/publishers", guarded(None, register), methods=["POST"]),
        Route("/api/v1/whoami", guarded("publish", whoami)),
        Route("/api/v1/keys", guarded("keys", add_key), methods=["POST"]),
        Route("/api/v1/keys/{keyid}", guarded("keys", revoke_key), methods=["DELETE"]),
        Route("/api/v1/tokens", guarded("tokens", create_token), methods=["POST"]),
        Route("/api/v1/tokens", guarded("tokens", list_tokens), methods=["GET"]),
        Route("/api/v1/tokens/{token_id}", guarded("tokens", revoke_token), methods=["DELETE"]),
        Route("/api/v1/namespaces/{namespace}/role", guarded(None, role)),
        Route("/api/v1/upload", guarded("publish", upload), methods=["POST"]),
        Route("/api/v1/packages/{name}/{version}/yank", guarded("yank", yank), methods=["POST"]),
        Route("/api/v1/packages/{name}/{version}/unyank", guarded("yank", yank), methods=["POST"]),
        Route("/api/v1/search", guarded(None, search)),
        Route("/api/v1/index.json", guarded(None, index)),
        Route("/api/v1/packages/{name}.json", guarded(None, package)),
        Route("/tuf/{name}", guarded(None, tuf_file)),
        Route("/targets/{package}/{filename}", guarded(None, artifact)),
        Mount("/static", StaticFiles(directory=str(Path(__file__).parent / "static")), name="static"),
    ]
    return Starlette(routes=routes)
