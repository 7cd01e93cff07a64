"""``bastion serve MODULE:ATTRIBUTE``: an application's ``bastion.MCPServer``, in one process or several.

The module is imported as uvicorn imports an application: from ``--app-dir`` (default the
current directory), put first on ``sys.path``. With ``--workers N`` each of N worker
processes imports it again and builds its own app (:class:`ServerApp`, which uvicorn's
supervisor hands to each worker); they share the authorization server's state only
through its store, so a server whose store is ``memory://`` is refused.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import uvicorn

from bastion._cli.errors import CommandRefused
from bastion._cli.serving import Server, Supervisor, configure_logging

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from bastion._adapters.mcpserver import MCPServer

__all__ = ["ServerApp", "add_parser", "run"]


def add_parser(commands: Any) -> None:
    """Add ``serve`` to the ``bastion`` command's subcommands."""
    serve = commands.add_parser(
        "serve",
        help="serve an MCPServer from a module, e.g. notes.server:mcp",
        description="Serve a bastion.MCPServer over streamable HTTP. Ctrl-C or SIGTERM stops it, with exit status 0.",
    )
    serve.add_argument("target", help="MODULE:ATTRIBUTE of a bastion.MCPServer (ATTRIBUTE defaults to mcp)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind")
    serve.add_argument("--port", type=int, default=8000, help="port")
    serve.add_argument("--path", default="/mcp", help="the MCP endpoint's path")
    serve.add_argument("--stateless", action="store_true", help="stateless HTTP (no sessions)")
    serve.add_argument("--json", action="store_true", help="JSON responses instead of SSE streams")
    serve.add_argument(
        "--store",
        help="the authorization server's store when the module gives none: sqlite:///PATH, redis://HOST:6379/0 "
        "or memory:// (sets BASTION_STORE; default: BASTION_STORE, else a SQLite file of its own)",
    )
    serve.add_argument("--app-dir", default=".", help="the directory the module is imported from, first on sys.path")
    serve.add_argument(
        "--workers",
        type=_workers,
        default=1,
        help="worker processes; more than one needs a store they share (SQLite or Redis, not memory://)",
    )
    serve.add_argument("--traceback", action="store_true", help="print the traceback when importing the module fails")
    serve.set_defaults(run=run)


def _workers(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"a number of processes, 1 or more, not {text!r}")
    return value


@dataclass(frozen=True)
class ServerApp:
    """The app of ``bastion serve``, built from its target: uvicorn calls it in each worker (``factory=True``).

    It is pickled into each worker process, so it holds only the command's options.
    """

    target: str
    app_dir: str
    path: str = "/mcp"
    stateless: bool = False
    json: bool = False
    host: str = "127.0.0.1"
    show_traceback: bool = False

    def server(self) -> MCPServer:
        """Import the target's module and return its ``MCPServer``.

        Raises:
            CommandRefused: the module cannot be imported, or the attribute is no ``bastion.MCPServer``.
            ConfigurationError: the module's server is configured wrongly (``BASTION_*`` variables).
        """
        from bastion._adapters.mcpserver import MCPServer
        from bastion._core.errors import ConfigurationError

        module_name, _, attribute = self.target.partition(":")
        if self.app_dir not in sys.path:
            sys.path.insert(0, self.app_dir)
        try:
            module = importlib.import_module(module_name)
            server = getattr(module, attribute or "mcp")
        except (ImportError, AttributeError) as exc:
            self._traceback()
            raise CommandRefused(f"cannot load {self.target!r}: {exc}") from None
        except ConfigurationError:
            raise
        except Exception as exc:
            self._traceback()
            hint = "" if self.show_traceback else " (--traceback shows where)"
            raise CommandRefused(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}{hint}") from None
        if not isinstance(server, MCPServer):
            raise CommandRefused(f"{self.target!r} is not a bastion.MCPServer")
        return server

    def __call__(self) -> Starlette:
        """The server's streamable HTTP app, protected (in a worker process)."""
        configure_logging()
        return self.app(self.server())

    def app(self, server: MCPServer) -> Starlette:
        """``server``'s streamable HTTP app with the command's options."""
        return server.streamable_http_app(
            streamable_http_path=self.path, stateless_http=self.stateless, json_response=self.json, host=self.host
        )

    def _traceback(self) -> None:
        if self.show_traceback:
            traceback.print_exc()


def run(args: argparse.Namespace) -> int:
    """Run ``bastion serve`` until it is stopped; the exit status."""
    if args.store:
        os.environ["BASTION_STORE"] = args.store  # read when the module builds its server
    target = ServerApp(
        args.target,
        os.path.abspath(args.app_dir),
        path=args.path,
        stateless=args.stateless,
        json=args.json,
        host=args.host,
        show_traceback=args.traceback,
    )
    server = target.server()
    if args.workers > 1:
        _refuse_memory_store(server, args.workers)
        return _supervise(target, args)
    uvicorn_server = Server(uvicorn.Config(target.app(server), host=args.host, port=args.port, log_level="info"))
    uvicorn_server.run()
    if not uvicorn_server.started:
        return 1  # uvicorn said why (the port is taken)
    print("bastion serve: stopped", file=sys.stderr)
    return 0


def _refuse_memory_store(server: MCPServer, workers: int) -> None:
    from bastion.storage import MemoryStore

    auth = server.authorization_server
    if auth is not None and isinstance(auth.store, MemoryStore):
        raise CommandRefused(
            f"--workers {workers} needs a store the workers share, and this authorization server keeps its "
            "state in memory: give --store sqlite:///PATH or redis://HOST:6379/0"
        )


def _supervise(target: ServerApp, args: argparse.Namespace) -> int:
    config = uvicorn.Config(
        target, factory=True, host=args.host, port=args.port, workers=args.workers, log_level="info"
    )
    supervisor = Supervisor(config, [config.bind_socket()])
    supervisor.run()
    if not supervisor.stopped:
        raise CommandRefused("the workers could not start (their log says why)", 1)
    print("bastion serve: stopped", file=sys.stderr)
    return 0
