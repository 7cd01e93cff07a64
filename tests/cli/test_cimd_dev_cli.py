"""``bastion demo --dev-metadata-origin --dev-ca-file``, and the walkthrough of docs/cimd-development.md run as written.

The walkthrough's own commands and programs are taken from the page: its OpenSSL
commands make the CA and certificate, its document server serves the document, the
real ``bastion demo`` fetches it, and its Python SDK client signs in (the browser is a
program that follows the authorization URL) and calls a tool.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2
import pytest

from bastion._cli.main import main

from support.tls import self_signed

WALKTHROUGH = Path(__file__).parent.parent.parent / "docs" / "cimd-development.md"
#: The TypeScript SDK and tsx, installed by scripts/test (``npm ci --prefix tests/tsclient``).
TS_CLIENT = Path(__file__).parent.parent / "tsclient"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def blocks(language: str) -> list[str]:
    """The code blocks of the walkthrough in ``language``, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```", WALKTHROUGH.read_text(), re.DOTALL | re.MULTILINE)


def block(language: str, containing: str) -> str:
    found = [text for text in blocks(language) if containing in text]
    assert len(found) == 1, f"one {language} block with {containing!r} in {WALKTHROUGH.name}"
    return found[0]


def replaced(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new)


@contextmanager
def started(argv: list[str], cwd: Path, ready: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """``argv`` running in ``cwd`` until the block ends; yields its output up to the line holding ``ready``."""
    process = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    try:
        for line in process.stdout:
            lines.append(line)
            if ready in line:
                break
        assert ready in "".join(lines), "".join(lines)
        yield "".join(lines)
    finally:
        process.terminate()
        process.wait(timeout=60)
        process.stdout.close()


# -- the flags' refusals --------------------------------------------------------------------------


def test_demo_refuses_half_the_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tls = self_signed(tmp_path)
    assert main(["demo", "--store", "memory://", "--dev-metadata-origin", "https://localhost:3000"]) == 2
    assert "--dev-metadata-origin needs --dev-ca-file" in capsys.readouterr().err
    assert main(["demo", "--store", "memory://", "--dev-ca-file", str(tls.ca)]) == 2
    assert "--dev-ca-file is used only with --dev-metadata-origin" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--dev-metadata-origin", "http://localhost:3000"], "must use https"),
        (["--dev-metadata-origin", "https://localhost:3000/client.json"], "only scheme, host and port"),
        (["--dev-metadata-origin", "https://example.com"], "must be a loopback host"),
        (["--dev-metadata-origin", "https://localhost:3000", "--public-url", "https://notes.example.com"], "loopback"),
    ],
)
def test_demo_refuses_what_the_server_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], arguments: list[str], message: str
) -> None:
    tls = self_signed(tmp_path)
    assert main(["demo", "--store", "memory://", "--dev-ca-file", str(tls.ca), *arguments]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bastion demo: ")
    assert message in err
    assert "Traceback" not in err


def test_demo_refuses_a_ca_file_without_a_certificate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tls = self_signed(tmp_path)
    argv = ["demo", "--store", "memory://", "--dev-metadata-origin", "https://localhost:3000", "--dev-ca-file"]
    assert main([*argv, str(tls.key)]) == 2
    assert f"development CA file {str(tls.key)!r} holds no PEM certificate" in capsys.readouterr().err
    assert main([*argv, str(tmp_path / "missing.pem")]) == 2
    assert "is not a file" in capsys.readouterr().err


def test_demo_refuses_the_flags_with_bastion_auth(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BASTION_AUTH", "authserver")
    tls = self_signed(tmp_path)
    argv = ["demo", "--dev-metadata-origin", "https://localhost:3000", "--dev-ca-file", str(tls.ca)]
    assert main(argv) == 2
    assert "BASTION_AUTH replaces it" in capsys.readouterr().err


# -- the walkthrough, as written ---------------------------------------------------------------


def walkthrough_files(folder: Path, document_port: int) -> str:
    """The CA, the certificate and the document of the walkthrough in ``folder``; the document's URL."""
    commands = block("console", "openssl req -x509")
    script = "\n".join(line.removeprefix("$ ") for line in commands.splitlines())
    subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=folder, check=True, capture_output=True)
    origin = f"localhost:{document_port}"
    document = replaced(block("json", '"client_id"'), "localhost:3000", origin)
    (folder / "client-metadata.json").write_text(document)
    server = replaced(block("python", "DOCUMENT = Path"), "PORT = 3000", f"PORT = {document_port}")
    (folder / "serve_document.py").write_text(server)
    return f"https://{origin}/client-metadata.json"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="the walkthrough's certificates are made by openssl")
def test_the_walkthrough_signs_in_with_a_local_metadata_document(tmp_path: Path) -> None:
    document_port, demo_port, callback_port = free_port(), free_port(), free_port()
    client_id = walkthrough_files(tmp_path, document_port)
    client = block("python", "client_metadata_url=CLIENT_METADATA_URL")
    client = replaced(client, "localhost:3000", f"localhost:{document_port}")
    client = replaced(client, "CALLBACK_PORT = 8090", f"CALLBACK_PORT = {callback_port}")
    (tmp_path / "client.py").write_text(client)
    # The user's browser: it opens the authorization URL, which (auto-approved) redirects to the client.
    browser = tmp_path / "browser"
    browser.write_text(f"#!{sys.executable}\nimport sys, urllib.request\nurllib.request.urlopen(sys.argv[1])\n")
    browser.chmod(0o755)
    env = {**os.environ, "BROWSER": str(browser)}
    demo = [sys.executable, "-m", "bastion._cli.main", "demo", "--port", str(demo_port), "--store", "memory://"]
    demo += ["--auto-approve", "alice", "--dev-metadata-origin", f"https://localhost:{document_port}"]
    demo += ["--dev-ca-file", "dev-ca.pem"]
    with (
        started([sys.executable, "serve_document.py"], tmp_path, "serving https://localhost"),
        started(demo, tmp_path, "Ctrl-C stops it", env) as banner,
    ):
        assert "DEVELOPMENT ONLY: client metadata documents are fetched from the loopback origins" in banner
        assert f"https://localhost:{document_port}" in banner
        endpoint = f"http://127.0.0.1:{demo_port}/mcp"
        signed_in = subprocess.run(
            [sys.executable, "client.py", endpoint], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
        )
    assert signed_in.returncode == 0, signed_in.stdout + signed_in.stderr
    assert "Open this URL to sign in: " in signed_in.stdout
    assert f"'client_id': '{client_id}'" in signed_in.stdout
    assert "'subject': 'alice'" in signed_in.stdout


def skip_without_the_typescript_sdk() -> None:
    """Skip without ``node`` or the TypeScript client's packages, except on CI, where their absence is a failure."""
    missing = None
    if shutil.which("node") is None:
        missing = "node is not installed (apt-get install nodejs npm)"
    elif not (TS_CLIENT / "node_modules" / "@modelcontextprotocol" / "sdk").is_dir():
        missing = "the TypeScript client's packages are not installed (npm ci --prefix tests/tsclient)"
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="the walkthrough's certificates are made by openssl")
def test_the_walkthrough_typescript_client_signs_in_with_its_client_metadata_url(tmp_path: Path) -> None:
    skip_without_the_typescript_sdk()
    document_port, demo_port, callback_port = free_port(), free_port(), free_port()
    client_id = walkthrough_files(tmp_path, document_port)
    program = block("typescript", "clientMetadataUrl = CLIENT_METADATA_URL")
    program = replaced(program, "localhost:3000", f"localhost:{document_port}")
    program = replaced(program, "CALLBACK_PORT = 8090", f"CALLBACK_PORT = {callback_port}")
    (tmp_path / "client.ts").write_text(program)
    (tmp_path / "package.json").write_text('{"type": "module"}\n')  # as `npm pkg set type=module` makes it
    (tmp_path / "node_modules").symlink_to(TS_CLIENT / "node_modules")
    tsc = [str(TS_CLIENT / "node_modules" / ".bin" / "tsc"), "--noEmit", "--strict", "--target", "es2022"]
    tsc += ["--module", "nodenext", "--moduleResolution", "nodenext", "--types", "node", "client.ts"]
    checked = subprocess.run(tsc, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr  # the page's TypeScript is typed right
    demo = [sys.executable, "-m", "bastion._cli.main", "demo", "--port", str(demo_port), "--store", "memory://"]
    demo += ["--auto-approve", "alice", "--dev-metadata-origin", f"https://localhost:{document_port}"]
    demo += ["--dev-ca-file", "dev-ca.pem"]
    tsx = [str(TS_CLIENT / "node_modules" / ".bin" / "tsx"), "client.ts", f"http://127.0.0.1:{demo_port}/mcp"]
    with (
        started([sys.executable, "serve_document.py"], tmp_path, "serving https://localhost"),
        started(demo, tmp_path, "Ctrl-C stops it"),
    ):
        client = subprocess.Popen(tsx, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert client.stdout is not None
            prompt = client.stdout.readline()
            assert prompt.startswith("Open this URL to sign in: "), prompt + client.communicate(timeout=30)[1]
            # The browser: the authorization URL (auto-approved) redirects to the client's callback.
            httpx2.get(prompt.split(": ", 1)[1].strip(), follow_redirects=True, timeout=30)
            out, err = client.communicate(timeout=60)
        finally:
            if client.poll() is None:
                client.kill()
                client.communicate()
    assert client.returncode == 0, prompt + out + err
    me = json.loads(out.strip().splitlines()[-1])
    assert me["client_id"] == client_id
    assert me["subject"] == "alice"


def test_the_walkthrough_python_blocks_are_programs() -> None:
    programs = blocks("python")
    assert len(programs) == 3
    for program in programs:
        compile(program, WALKTHROUGH.name, "exec")  # complete programs, each with its imports
        assert program.lstrip().startswith(('"""', "from ", "import "))
