"""A Hugging Face cache laid out as huggingface_hub lays it out, and a local Hub server.

Cache (huggingface_hub's `file_download`): `<cache>/models--<owner>--<name>/` holds `blobs/<etag>`
(the bytes), `snapshots/<commit>/<path>` (relative links to the blobs) and `refs/<revision>`
(the commit, no newline).

Server: the requests `hf_hub_download` makes against HF_ENDPOINT (read in the installed
huggingface_hub): `HEAD` then `GET /<owner>/<name>/resolve/<revision>/<path>`, answered with the
headers it needs (X-Repo-Commit, ETag, Content-Length) or the Hub's error codes (X-Error-Code:
GatedRepo with 401 without a token and 403 with one; EntryNotFound; RepoNotFound). Other paths
(huggingface_hub 2.x also asks for /api/agent-harnesses) get a plain 404.
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def lay_out_cached_repo(cache: Path, repo_id: str, files: dict[str, bytes], commit: str, revision: str = "main") -> Path:
    """`files` cached for `repo_id` at `commit`, with `revision` pointing at it; returns the snapshot folder."""
    storage = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = storage / "snapshots" / commit
    for name, data in files.items():
        blob = storage / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        pointer = snapshot / name
        pointer.parent.mkdir(parents=True, exist_ok=True)
        pointer.symlink_to(os.path.relpath(blob, pointer.parent))
    (storage / "refs").mkdir(parents=True, exist_ok=True)
    (storage / "refs" / revision).write_text(commit, encoding="utf-8")
    return snapshot


@dataclass
class FakeRepo:
    commit: str
    files: dict[str, bytes]
    gated: bool = False


@dataclass
class LocalHub:
    """A Hub endpoint on 127.0.0.1 serving `repos`; `requests` records (method, path, authorization)."""

    repos: dict[str, FakeRepo]
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)

    def __enter__(self) -> "LocalHub":
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self) -> None:
                self._answer(send_body=False)

            def do_GET(self) -> None:
                self._answer(send_body=True)

            def _answer(self, send_body: bool) -> None:
                hub.requests.append((self.command, self.path, self.headers.get("authorization")))
                parts = self.path.split("?")[0].lstrip("/").split("/", 4)
                if len(parts) != 5 or parts[2] != "resolve":
                    return self._error(404, "", "Not found")  # e.g. 2.x's /api/agent-harnesses look-up
                repo = hub.repos.get("/".join(parts[:2]))
                if repo is None:
                    return self._error(401, "RepoNotFound", "Repository not found")
                owner, name, _, _revision, filename = parts
                if repo.gated:
                    authorized = self.headers.get("authorization") is not None
                    message = f"Access to model {owner}/{name} is restricted. You must have access to it."
                    return self._error(403 if authorized else 401, "GatedRepo", message, repo.commit)
                data = repo.files.get(filename)
                if data is None:
                    return self._error(404, "EntryNotFound", "Entry not found", repo.commit)
                self.send_response(200)
                self.send_header("X-Repo-Commit", repo.commit)
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if send_body:
                    self.wfile.write(data)

            def _error(self, status: int, code: str, message: str, commit: str | None = None) -> None:
                self.send_response(status)
                if code:
                    self.send_header("X-Error-Code", code)
                self.send_header("X-Error-Message", message)
                if commit:
                    self.send_header("X-Repo-Commit", commit)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
