"""A deterministic synthetic judge: an OpenAI-compatible chat endpoint on loopback that rates by a
fixed rule, so the embedded default can run MT-bench's whole judging path with no key and no
network.

Its ratings are a function of the judge prompt's text (1 + sha256 mod 10), not of answer quality:
they exercise the judge prompts, the rating parse, the cache and the aggregation, and nothing
else. Every output that carries them says so (`syntheticJudge` in the summary and the status,
`synthetic_judge` in `leaderboard_table` and W&B, the terminal), and its model name is its own
(`SYNTHETIC_JUDGE_MODEL`), never a real judge's; a cached rating can never pass for a real one,
since the cache keys on the judge's URL as well.
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SYNTHETIC_JUDGE_MODEL = "nejumi-synthetic-judge"


def synthetic_rating(prompt: str) -> int:
    """The fixed rule: 1–10 from the prompt's bytes (a visible pattern, not a quality signal)."""
    return 1 + int.from_bytes(hashlib.sha256(prompt.encode("utf-8")).digest()[:4], "big") % 10


def _completion(body: dict[str, Any]) -> dict[str, Any]:
    prompt = "\n".join(str(m.get("content", "")) for m in body.get("messages") or [])
    text = f"(synthetic judge: a fixed rule, not a quality rating) Rating: [[{synthetic_rating(prompt)}]]"
    return {
        "id": "synthetic",
        "object": "chat.completion",
        "created": 0,
        "model": SYNTHETIC_JUDGE_MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *_args: object) -> None:
        pass

    def _reply(self, status: int, doc: dict[str, Any]) -> None:
        payload = json.dumps(doc, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/v1/models":
            self._reply(200, {"object": "list", "data": [{"id": SYNTHETIC_JUDGE_MODEL, "object": "model"}]})
        else:
            self._reply(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._reply(404, {"error": {"message": "the synthetic judge only answers chat completions"}})
        elif body.get("model") != SYNTHETIC_JUDGE_MODEL:
            self._reply(404, {"error": {"message": f"The model `{body.get('model')}` does not exist."}})
        else:
            self._reply(200, _completion(body))


class SyntheticJudge:
    """`with SyntheticJudge() as judge:` serves on 127.0.0.1 (a free port) in a daemon thread."""

    model = SYNTHETIC_JUDGE_MODEL

    def __init__(self) -> None:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self) -> SyntheticJudge:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
