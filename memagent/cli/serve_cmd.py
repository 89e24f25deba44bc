"""`memagent serve`: the agents behind an OpenAI-compatible endpoint."""

from __future__ import annotations

import ipaddress
import logging
import socket

import click

from ..errors import ConfigError
from .context import AppContext, pass_app


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def register(cli: click.Group) -> None:
    @cli.command()
    @click.option("--host", help="Address to listen on (default: [serve] host, 127.0.0.1).")
    @click.option("--port", type=click.IntRange(1, 65535), help="Port (default: [serve] port, 8283).")
    @pass_app
    def serve(app: AppContext, host: str | None, port: int | None) -> None:
        """Serve every agent at an OpenAI-compatible /v1 endpoint (model = agent name), for SillyTavern,
        Open WebUI and any OpenAI client."""
        import uvicorn

        from ..llm.factory import make_backend
        from ..serve.app import create_app
        from ..serve.pool import AgentPool

        settings = app.settings
        host = host or settings.serve.host
        port = port or settings.serve.port
        keys = settings.serve.keys()
        if not keys and not is_loopback(host):
            raise ConfigError(f"listening on {host} lets other machines in; set [serve] api_keys (or "
                              "MEMAGENT_SERVE_API_KEYS) first, or listen on 127.0.0.1")
        with socket.socket() as probe:  # a port in use is one line, not a uvicorn traceback
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror}); pick another --port") from None
        click.echo("loading the model…", err=True)
        backend = make_backend(settings, app.paths, progress=True)
        pool = AgentPool(app.paths, settings, backend, turn_wait=settings.llm.timeout)
        agents = pool.names()
        click.echo(f"memagent serve: http://{host}:{port}/v1 · {len(agents)} agent(s): {', '.join(agents) or 'none yet'}"
                   f" · API key {'required' if keys else 'not required'}", err=True)
        if not agents:
            click.echo("make one with `memagent agents create NAME`; it appears as a model at once", err=True)
        logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
        uvicorn.run(create_app(pool, settings.serve), host=host, port=port,
                    log_level="warning", timeout_graceful_shutdown=int(settings.llm.timeout))
