"""The bastion command as a user meets it: clean stops, one-line errors, --version, defaults in --help, workers."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path

import httpx2
import pytest

from bastion._cli.main import _parser, main

from support.notes import MCP_HEADERS, rpc

APP = """
from bastion import AuthorizationServer, MCPServer

mcp = MCPServer("notes", auth=AuthorizationServer("http://127.0.0.1:{port}"))


@mcp.tool()
def hello() -> str:
    return "hi"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def environment(**extra: str) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.upper().startswith("BASTION_")}
    environ.update(extra)
    return environ


@contextmanager
def started(
    argv: list[str], ready: str, *, times: int = 1, cwd: Path | None = None, **env: str
) -> Iterator[subprocess.Popen[str]]:
    """``bastion <argv>`` (cwd not on sys.path: ``-P``), once ``ready`` appeared ``times`` on stdout or stderr."""
    process = subprocess.Popen(
        [sys.executable, "-P", "-m", "bastion._cli.main", *argv],
        env=environment(**env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    stream = process.stdout if "Ctrl-C" in ready else process.stderr
    assert stream is not None
    seen = 0
    for line in stream:
        seen += ready in line
        if seen >= times:
            break
    try:
        assert process.poll() is None
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


def stop(process: subprocess.Popen[str], sig: int, group: bool = False) -> tuple[int, str]:
    if group:
        os.killpg(process.pid, sig)  # as Ctrl-C at a terminal: every process of the group
    else:
        process.send_signal(sig)
    out, err = process.communicate(timeout=30)
    return process.returncode, out + err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_demo_stops_cleanly_on_a_signal(sig: int) -> None:
    argv = ["demo", "--port", str(free_port()), "--store", "memory://"]
    with started(argv, "Ctrl-C stops it") as process:
        status, output = stop(process, sig)
    assert status == 0
    assert "Traceback" not in output
    assert "KeyboardInterrupt" not in output
    assert "bastion demo: stopped" in output


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_serve_imports_from_the_current_directory_and_stops_cleanly(tmp_path: Path, sig: int) -> None:
    port = free_port()
    (tmp_path / "cwd_notes.py").write_text(APP.format(port=port))
    argv = ["serve", "cwd_notes:mcp", "--port", str(port), "--store", "memory://"]
    with started(argv, "Application startup complete", cwd=tmp_path) as process:
        response = httpx2.post(f"http://127.0.0.1:{port}/mcp", json=rpc("tools/list"), headers=MCP_HEADERS)
        assert response.status_code == 401
        status, output = stop(process, sig)
    assert status == 0
    assert "Traceback" not in output
    assert "bastion serve: stopped" in output


def test_serve_imports_from_app_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "appdir_mod.py").write_text("mcp = 1\n")
    assert main(["serve", "appdir_mod:mcp", "--app-dir", str(tmp_path / "elsewhere")]) == 2
    assert "'appdir_mod:mcp' is not a bastion.MCPServer" in capsys.readouterr().err


def test_serve_runs_several_workers_that_answer(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "workers_notes.py").write_text(APP.format(port=port))
    store = f"sqlite:///{tmp_path / 'auth.db'}"
    argv = ["serve", "workers_notes:mcp", "--port", str(port), "--workers", "2", "--store", store]
    with started(argv, "Application startup complete", times=2, cwd=tmp_path) as process:
        base = f"http://127.0.0.1:{port}"
        for _ in range(4):
            metadata = httpx2.get(base + "/.well-known/oauth-authorization-server").json()
            assert metadata["issuer"] == base + "/"
        assert httpx2.post(base + "/mcp", json=rpc("tools/list"), headers=MCP_HEADERS).status_code == 401
        status, output = stop(process, signal.SIGINT, group=True)
    assert status == 0
    assert "Traceback" not in output
    assert "bastion serve: stopped" in output


def test_serve_refuses_workers_on_a_memory_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "memory_notes.py").write_text(APP.format(port=8000))
    monkeypatch.chdir(tmp_path)
    assert main(["serve", "memory_notes:mcp", "--workers", "2", "--store", "memory://"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bastion serve: --workers 2 needs a store the workers share")
    assert len(err.strip().splitlines()) == 1


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"bastion {version('mcp-bastion')}"


def _commands(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*prefix, name))


def test_every_help_shows_each_default(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, parser in _commands(_parser()):
        with pytest.raises(SystemExit):
            main([*argv, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "(default: None)" not in text, argv
        for action in parser._actions:
            if not action.option_strings or action.default in (None, False, [], "", argparse.SUPPRESS):
                continue
            assert f"(default: {action.default})" in text, (argv, action.option_strings)
        for action in parser._actions:
            takes_value = action.option_strings and action.nargs != 0 and action.dest not in ("help", "version")
            if takes_value and action.default is None and not action.required:
                assert "default" in (action.help or ""), (argv, action.option_strings)


BAD_SETTINGS = [
    ({"BASTION_AUTH": "jwt"}, "BASTION_AUTH=jwt needs one of"),
    ({"BASTION_STORE": "nonsense://"}, "unknown store URL scheme 'nonsense'"),
]
COMMANDS = [["demo", "--port", "0"], ["serve", "bad_settings:mcp", "--port", "0"], ["clients", "list"]]


@pytest.mark.parametrize(("env", "message"), BAD_SETTINGS)
@pytest.mark.parametrize("argv", COMMANDS)
def test_a_bad_setting_is_one_line_and_status_2(
    tmp_path: Path, env: dict[str, str], message: str, argv: list[str]
) -> None:
    if argv[0] == "clients":  # the administration commands read only the store
        env, message = {**env, "BASTION_STORE": "nonsense://"}, "unknown store URL scheme 'nonsense'"
    # Its authentication from BASTION_AUTH, or an authorization server on BASTION_STORE.
    auth = "" if "BASTION_AUTH" in env else ', auth=AuthorizationServer("http://127.0.0.1:8000")'
    (tmp_path / "bad_settings.py").write_text(
        f"from bastion import AuthorizationServer, MCPServer\nmcp = MCPServer('notes'{auth})\n"
    )
    command = [sys.executable, "-P", "-m", "bastion._cli.main", *argv]
    result = subprocess.run(
        command, env=environment(**env), cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    name = " ".join(argv[:2] if argv[0] == "clients" else argv[:1])
    assert result.stderr.splitlines() == [f"bastion {name}: " + result.stderr.split(": ", 1)[1].strip()]
    assert message in result.stderr


def test_an_exception_in_the_module_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "broken_module.py").write_text('raise ValueError("the module is broken")\n')
    monkeypatch.chdir(tmp_path)
    assert main(["serve", "broken_module:mcp"]) == 2
    err = capsys.readouterr().err
    expected = "bastion serve: importing 'broken_module' failed: ValueError: the module is broken"
    assert err == expected + " (--traceback shows where)\n"
    assert main(["serve", "broken_module:mcp", "--traceback"]) == 2
    assert "Traceback" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://x", "--public-url must be an absolute http(s) URL such as https://notes.example.com, not 'ftp://x'"),
        ("not-a-url", "--public-url must be an absolute http(s) URL"),
        ("https://notes.example.com/?a=1", "--public-url must not have a query or a fragment"),
        ("http://notes.example.com", "--public-url must use https"),
        ("https://user:secret@notes.example.com", "--public-url must not contain credentials"),
    ],
)
def test_a_bad_public_url_names_the_flag(url: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--public-url", url, "--store", "memory://"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"bastion demo: {message}")
    assert "secret" not in err


def test_demo_store_flag_with_a_verifier_does_not_blame_bastion_store(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for name in [n for n in os.environ if n.upper().startswith("BASTION_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("BASTION_AUTH", "jwt")  # no key source: refused once the settings are read
    assert main(["demo", "--store", "memory://"]) == 2
    err = capsys.readouterr().err
    assert "ignoring BASTION_STORE" not in caplog.text + err
    assert "bastion demo: --store is not used: BASTION_AUTH=jwt verifies tokens and keeps no store" in err
    assert "bastion demo: BASTION_AUTH=jwt needs one of" in err
