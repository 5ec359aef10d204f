"""A server answering 2 MB per request, run through the real CLI: every answer is cut to the answer
cap where it is received, so the workspace stays small, the judge never sees more than the cap,
and the run says how many answers it cut (issue: a 58-request run wrote 1 GB)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from nejumi_eval.benchmarks.mtbench.data import default_mirror, load_variant
from nejumi_eval.report.results import read_table
from nejumi_eval.runtime.client.limits import MIN_ANSWER_BYTES
from tests.fixtures.openai_stub import Reply, StubServer
from tests.fixtures.scripted_judge import ScriptedJudge

REPO = Path(__file__).resolve().parents[2]
HEAD, TAIL = "<<answer-start>>", "<<answer-end>>"
ANSWER = HEAD + ("答" + "x" * 97) * 21_000 + TAIL  # 2.1 MB of UTF-8, a 3-byte character every 100
CAP = MIN_ANSWER_BYTES  # jaster's and MT-bench's max_tokens are far below 4096: the floor applies
JASTER_REQUESTS = 2 + 1  # jamp: 2 test samples + 1 dev sample
MTBENCH_TURNS = 2 * 8  # one question per category, two turns


class HugeAnswers(StubServer):
    """The echo stub, except every answer is ANSWER (2.1 MB), whatever max_tokens says."""

    def reply(self, path: str, body: dict[str, Any]) -> Reply:
        reply = super().reply(path, body)
        if reply.status == 200 and reply.body is not None:
            choice = reply.body["choices"][0]
            if "message" in choice:
                choice["message"]["content"] = ANSWER
            else:
                choice["text"] = ANSWER
        return reply


class WatchingJudge(ScriptedJudge):
    """The scripted judge, keeping what it was sent."""

    def reply(self, path: str, body: dict[str, Any]) -> Reply:
        with self._lock:
            self.prompts = [*getattr(self, "prompts", []), body["messages"][-1]["content"]]
        return super().reply(path, body)


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def test_a_server_answering_2_mb_per_request_is_capped(tmp_path: Path) -> None:
    questions = {q.question_id: q.turns[0] for q in load_variant("neo", default_mirror()).questions}
    workspace = tmp_path / "ws"
    with HugeAnswers(model="m") as model, WatchingJudge(questions) as judge:
        doc = {
            "model": {
                "name": "m",
                "source": "openai-compatible",
                "endpoint": model.base_url,
                "mode": "completion",
            },
            "benchmarks": {
                "jaster": {"datasets": ["jamp"], "testSamples": 2, "devSamples": 1},
                "mtbench": {
                    "questionsPerCategory": 1,
                    "judge": {"model": "gpt-4-0613", "endpoint": judge.base_url, "concurrency": 4},
                },
            },
            "generation": {"concurrency": 4, "maxRetries": 1},
            "workspace": {"path": str(workspace)},
            "wandb": {"mode": "offline"},
            "summaryPath": str(tmp_path / "summary.json"),
        }
        config = tmp_path / "c.yaml"
        config.write_text(yaml.safe_dump(doc, allow_unicode=True))
        proc = subprocess.run(
            [sys.executable, "-m", "nejumi_eval.cli", "run", str(config)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
            env={
                **os.environ,
                "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            },
        )
        model_calls, prompts = model.calls, list(getattr(judge, "prompts", []))
    assert proc.returncode == 0, proc.stderr[-3000:]
    answers = JASTER_REQUESTS + MTBENCH_TURNS
    assert model_calls == answers

    # the workspace: uncapped, every answer is stored 5 to 14 times (~400 MB here); capped, a few MB
    size = _du(workspace)
    print(
        f"\nworkspace: {size:,} bytes for {answers} answers of {len(ANSWER.encode()):,} bytes (cap {CAP:,})"
    )
    assert size < 12 * answers * CAP, f"workspace holds {size:,} bytes"
    assert size < 20_000_000

    # the judge saw every answer, each cut: its start, never its end, at most the cap per answer
    assert len(prompts) == MTBENCH_TURNS
    for prompt in prompts:
        seen = [m.group(0) for m in re.finditer(re.escape(HEAD) + r"[答x]*", prompt)]
        assert seen and len(seen) <= 2 and TAIL not in prompt
        assert all(len(answer.encode()) <= CAP for answer in seen)

    # counted, not silent: the summary, each benchmark, the tables and the terminal line
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["truncatedAnswers"] == answers  # the judge's short ratings are not cut
    assert summary["benchmarks"]["jaster"]["truncatedAnswers"] == JASTER_REQUESTS
    assert summary["benchmarks"]["mtbench"]["truncatedAnswers"] == MTBENCH_TURNS
    assert f"{answers} answers cut to the size cap" in proc.stderr
    results = Path(summary["resultsDir"])
    rows = [r for t in ("", "_dev") for r in read_table(results / f"jaster_output_table{t}.jsonl")]
    assert len(rows) == JASTER_REQUESTS
    for row in rows:
        assert row["truncated"] and ANSWER.startswith(row["raw_output"])
        assert CAP - 3 < len(row["raw_output"].encode()) <= CAP
    turns = [d for a in read_table(results / "mtbench_answers.jsonl") for d in a["turn_details"]]
    assert len(turns) == MTBENCH_TURNS and all(d["truncated"] for d in turns)
    run_doc = json.loads((results / "run.json").read_text())
    assert run_doc["client_stats"]["model"]["truncated"] == answers
    assert run_doc["client_stats"]["judge"]["truncated"] == 0
