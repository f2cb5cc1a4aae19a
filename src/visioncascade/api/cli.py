"""CLI commands of the API (serve, keys, db). Registered on the main Typer app by ``visioncascade.cli``.

Heavy imports (FastAPI, SQLAlchemy, uvicorn) happen inside the commands, so ``visioncascade --help`` stays
fast and works without the ``api`` extra.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from visioncascade.errors import ApiError, StorageError

__all__ = ["register"]

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="sqlite:///visioncascade.db (default) or postgresql+psycopg://user:pw@host/db "
        "(env VISIONCASCADE_DATABASE_URL).",
    ),
]


def _require_api_extra() -> None:
    try:
        import fastapi  # noqa: F401
        import sqlalchemy  # noqa: F401
    except ImportError as exc:
        raise ApiError(
            f"the API needs the 'api' extra ({exc.name} is missing): pip install 'visioncascade[api]'"
        ) from exc


def _database_url(db: str | None) -> str:
    from visioncascade.api.settings import load_settings

    return load_settings(database_url=db).database_url


def serve(
    db: DbOption = None,
    rules: Annotated[
        Path | None, typer.Option("--rules", help="YAML rules file (reloaded on change/SIGHUP).")
    ] = None,
    cascade: Annotated[
        list[Path] | None,
        typer.Option(
            "--cascade",
            help="Cascade YAML file run by the live camera page at / (repeat for several).",
        ),
    ] = None,
    host: Annotated[str | None, typer.Option(help="Interface to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
    workers: Annotated[
        int | None, typer.Option(help="Worker processes (default 1; the number of cores for throughput).")
    ] = None,
    environment: Annotated[
        str | None, typer.Option(help="development | staging | production (default production).")
    ] = None,
    migrate: Annotated[bool, typer.Option("--migrate/--no-migrate", help="Run `db upgrade` first.")] = True,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    access_log: Annotated[
        bool, typer.Option("--access-log/--no-access-log", help="Log every request.")
    ] = False,
    ssl_certfile: Annotated[
        Path | None,
        typer.Option(help="TLS certificate (PEM): serve HTTPS, which phones' browsers need for the camera."),
    ] = None,
    ssl_keyfile: Annotated[
        Path | None, typer.Option(help="TLS private key (PEM) for --ssl-certfile.")
    ] = None,
) -> None:
    """Run the prediction API server (options override VISIONCASCADE_* environment variables)."""
    _require_api_extra()
    import uvicorn

    from visioncascade.api.live import check_cascade_files
    from visioncascade.api.rules import load_rules
    from visioncascade.api.settings import load_settings
    from visioncascade.api.storage import upgrade_database

    settings = load_settings(
        database_url=db,
        rules_path=rules,
        host=host,
        port=port,
        workers=workers,
        environment=environment,
        cascade_paths=[p.resolve() for p in cascade] if cascade else None,
    )
    if settings.rules_path is not None:
        load_rules(settings.rules_path)  # a broken file stops here with a clear message
    check_cascade_files(settings.cascade_paths)  # so do broken cascade files and clashing names
    if (ssl_certfile is None) != (ssl_keyfile is None):
        raise ApiError("give both --ssl-certfile and --ssl-keyfile, or neither")
    # The workers rebuild the settings from the environment: pass the options on.
    for name, value in (
        ("DATABASE_URL", settings.database_url),
        ("RULES_PATH", str(settings.rules_path.resolve()) if settings.rules_path else None),
        ("HOST", settings.host),
        ("PORT", str(settings.port)),
        ("WORKERS", str(settings.workers)),
        ("ENVIRONMENT", settings.environment),
        ("CASCADE_PATHS", json.dumps([str(p) for p in settings.cascade_paths])),
    ):
        if value is not None:
            os.environ[f"VISIONCASCADE_{name}"] = value
    if migrate:
        upgrade_database(settings.database_url)
    else:  # said here in one line, not by the app's startup as a traceback from every worker
        _check_migrated(settings.database_url)
    uvicorn.run(
        "visioncascade.api.app:create_app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=log_level,
        access_log=access_log,
        proxy_headers=False,
        server_header=False,
        ssl_certfile=str(ssl_certfile) if ssl_certfile else None,
        ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None,
    )


def _check_migrated(url: str) -> None:
    """Raise :class:`StorageError` unless the database at ``url`` answers and holds the API's tables."""
    from visioncascade.api.storage import Database

    db = Database(url)
    try:
        ready = db.ping()
    finally:
        db.dispose()
    if not ready:
        raise StorageError(
            f"the database {url.split('@')[-1]} is unreachable or not migrated; run "
            "`visioncascade db upgrade --db ...` first, or serve without --no-migrate"
        )


keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)


@keys_app.command("create")
def keys_create(
    scope: Annotated[str, typer.Option(help="ingest | read | admin.")],
    name: Annotated[str, typer.Option(help="A name to recognise the key by, e.g. phone-app.")] = "",
    quiet: Annotated[bool, typer.Option(help="Print only the key.")] = False,
    db: DbOption = None,
) -> None:
    """Create an API key and print it once (only its hash is stored)."""
    _require_api_extra()
    from visioncascade.api.storage import SCOPES, Database, create_api_key

    if scope not in SCOPES:
        raise ApiError(f"unknown scope {scope!r}; use one of: {', '.join(SCOPES)}")
    database = Database(_database_url(db))
    try:
        raw, record = create_api_key(database, scope, name)
    finally:
        database.dispose()
    if quiet:
        typer.echo(raw)
        return
    typer.echo(f"created {record.scope} key {record.name!r} (prefix {record.prefix}); it is shown only once:")
    typer.echo(raw)
    typer.echo("send it as `Authorization: Bearer <key>` or `X-API-Key: <key>`", err=True)


@keys_app.command("list")
def keys_list(db: DbOption = None) -> None:
    """List keys (prefix, scope, name, created, revoked); never the keys themselves."""
    _require_api_extra()
    from visioncascade.api.storage import Database, list_api_keys

    database = Database(_database_url(db))
    try:
        rows = list_api_keys(database)
    finally:
        database.dispose()
    for r in rows:
        revoked = f" revoked {r.revoked_at:%Y-%m-%d}" if r.revoked_at else ""
        typer.echo(f"{r.prefix}  {r.scope:<6}  {r.name}  created {r.created_at:%Y-%m-%d %H:%M}{revoked}")


@keys_app.command("revoke")
def keys_revoke(
    prefix: Annotated[str, typer.Argument(help="The key's prefix (the part after vc_).")],
    db: DbOption = None,
) -> None:
    """Revoke a key; servers stop accepting it within key_cache_seconds."""
    _require_api_extra()
    from visioncascade.api.storage import Database, revoke_api_key

    database = Database(_database_url(db))
    try:
        n = revoke_api_key(database, prefix)
    finally:
        database.dispose()
    if n == 0:
        raise ApiError(f"no active key with prefix {prefix!r}; `visioncascade keys list` shows them")
    typer.echo(f"revoked {n} key(s) with prefix {prefix}")


@db_app.command("upgrade")
def db_upgrade(
    db: DbOption = None,
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
) -> None:
    """Create or migrate the API's tables to the latest schema (safe to run again)."""
    _require_api_extra()
    from visioncascade.api.storage import upgrade_database

    url = _database_url(db)
    upgrade_database(url, revision)
    typer.echo(f"database {url.split('@')[-1]} is at revision {revision}")


def register(app: typer.Typer) -> None:
    """Add the API's commands to ``app``: ``serve``, ``keys create|list|revoke``, ``db upgrade``."""
    app.command("serve")(serve)
    app.add_typer(keys_app, name="keys")
    app.add_typer(db_app, name="db")
