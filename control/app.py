"""The Litestar application: wiring of settings, database, storage, cache, auth and routes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.stores.base import Store
from litestar.stores.memory import MemoryStore
from litestar.stores.redis import RedisStore

from control import __version__
from control.config import Settings, load_settings
from control.db.engine import create_engine, create_session_factory
from control.db.migrate import upgrade
from control.domain.audit.checkpoints import Checkpointer
from control.domain.audit.controllers import AuditController
from control.domain.auth.controllers import (
    TOKEN_PATH,
    AuthController,
    audit_refused_token_request,
)
from control.domain.auth.middleware import PUBLIC_PATHS, BearerAuthMiddleware
from control.domain.auth.throttle import LoginThrottle
from control.domain.auth.tokens import TokenCodec
from control.domain.cases.controllers import CaseController, CaseWorkflowController
from control.domain.dicomweb.controllers import DicomwebController
from control.domain.exports.controllers import ExportController
from control.domain.findings.controllers import FindingController
from control.domain.models.controllers import ModelController, ModelDriftController
from control.domain.studies.controllers import StudyController
from control.domain.system.controllers import health, ready
from control.domain.users.controllers import UserController
from control.domain.viewer.controllers import ViewerController
from control.domain.viewer.slices import SliceViewerController
from control.http.api_docs import SCHEMA_PATH, assets_router, render_plugins
from control.http.context import provide_db_session
from control.http.errors import EXCEPTION_HANDLERS
from control.http.input_guard import InputGuardMiddleware
from control.http.logging import RequestIdMiddleware, add_request_id_header, configure_logging
from control.http.security import add_security_headers, strict_transport_security
from control.http.spa import workstation_handler
from control.inference.worker import Worker
from control.observability.collectors import DatabaseMetrics
from control.observability.endpoint import METRICS_PATH, metrics_handler
from control.observability.metrics import HttpMetricsMiddleware
from control.observability.tracing import HttpTracingMiddleware, configure_tracing
from control.storage import build_store
from control.storage.reconcile import reconcile_logged


def _cache_store(settings: Settings) -> Store:
    """Redis when MEDVISION_REDIS_URL is set, else an in-process memory store."""
    if settings.redis_url:
        return RedisStore.with_client(url=settings.redis_url, namespace="medvision")
    return MemoryStore()


def create_app(settings: Settings | None = None) -> Litestar:
    """A fully wired application; migrations run at start-up unless disabled in settings."""
    settings = settings or load_settings()
    configure_logging(settings.log_level, settings.log_json)
    engine = create_engine(settings)
    cache = _cache_store(settings)
    session_factory = create_session_factory(engine)
    store = build_store(settings)
    worker = Worker(settings, session_factory, store) if settings.worker_enabled else None
    checkpointer = Checkpointer(settings, session_factory, store)
    # Monitoring (docs/monitoring.md): database-derived metrics, traces when OTEL_* ask.
    db_metrics = DatabaseMetrics(settings, session_factory, store)
    configure_tracing("medvision-control")

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        if settings.migrate_on_startup:
            await anyio.to_thread.run_sync(upgrade, settings)
        stop = asyncio.Event()
        # Signed audit checkpoints outside the database: now, periodically, at shutdown.
        await checkpointer.checkpoint("startup")
        checkpoint_task = asyncio.create_task(checkpointer.run(stop))
        worker_task = asyncio.create_task(worker.run(stop)) if worker else None
        # Objects a killed upload left without rows (older than the grace period) go.
        reconcile_task = asyncio.create_task(reconcile_logged(session_factory, store))
        audit_verify_task = (
            asyncio.create_task(db_metrics.run_audit_verification(stop))
            if settings.metrics_enabled
            else None
        )
        try:
            yield
        finally:
            stop.set()
            await reconcile_task
            if audit_verify_task is not None:
                await audit_verify_task
            if worker_task is not None:
                await worker_task
            await checkpoint_task
            await checkpointer.checkpoint("shutdown", only_if_grown=True)
            await engine.dispose()
            if isinstance(cache, RedisStore):
                await cache._redis.aclose()

    state = {
        "settings": settings,
        "session_factory": session_factory,
        "store": store,
        "cache": cache,
        "worker": worker,
        "db_metrics": db_metrics,
        "token_codec": TokenCodec(
            settings.key("jwt"), settings.access_token_ttl_s, settings.refresh_token_ttl_s
        ),
        "login_throttle": LoginThrottle(
            cache.with_namespace("login") if isinstance(cache, RedisStore) else cache,
            settings.login_max_failures,
            settings.login_window_s,
        ),
    }
    public = [f"^{path}$" for path in PUBLIC_PATHS if path != "/schema"] + ["^/schema"]
    if settings.metrics_enabled and settings.metrics_public:
        public.append(f"^{METRICS_PATH}$")
    return Litestar(
        route_handlers=[
            health,
            ready,
            AuthController,
            UserController,
            StudyController,
            CaseController,
            CaseWorkflowController,
            FindingController,
            ExportController,
            AuditController,
            ModelController,
            ModelDriftController,
            ViewerController,
            SliceViewerController,
            DicomwebController,
            assets_router(),
            *([metrics_handler(settings.metrics_public)] if settings.metrics_enabled else []),
            # The UI: GET paths that no API route above claims (see control.http.spa).
            workstation_handler(settings.web_dir),
        ],
        state=State(state),
        dependencies={"db_session": Provide(provide_db_session)},
        middleware=[
            HttpTracingMiddleware,
            HttpMetricsMiddleware,
            RequestIdMiddleware,
            # Before authentication: hostile shapes from anyone stop here (NUL, deep JSON).
            DefineMiddleware(
                InputGuardMiddleware,
                on_refused={TOKEN_PATH: audit_refused_token_request},
            ),
            DefineMiddleware(BearerAuthMiddleware, exclude=public),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        before_send=[
            add_request_id_header,
            add_security_headers,
            *(
                [strict_transport_security(settings.hsts_max_age_s)]
                if settings.hsts_max_age_s
                else []
            ),
        ],
        lifespan=[lifespan],
        stores={"cache": cache},
        request_max_body_size=settings.max_request_bytes,
        multipart_form_part_limit=settings.max_files_per_request + 8,
        openapi_config=OpenAPIConfig(
            title="MedVision",
            version=__version__,
            path=SCHEMA_PATH,
            render_plugins=render_plugins(),
            use_handler_docstrings=True,
            components=Components(
                security_schemes={
                    "BearerToken": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT")
                }
            ),
            security=[{"BearerToken": []}],
        ),
        logging_config=None,
        debug=False,
    )
