"""The GPU bench's arithmetic (tests/bench/gpu_bench.py): GPU-held seconds from the pods' own
timestamps times their GPUs (only pods asking for GPUs), serving seconds from the stub server's
record, their ratio."""

from __future__ import annotations

from tests.bench.gpu_bench import gpu_held_vs_serving
from tests.support.served import model_folder, stub_vllm


def _pod(scheduled: str, finished: str, gpus: int = 1) -> dict:
    limits = {"nvidia.com/gpu": str(gpus)} if gpus else {}
    return {
        "spec": {"containers": [{"name": "evaluator", "resources": {"limits": limits}}]},
        "status": {
            "conditions": [
                {"type": "Initialized", "lastTransitionTime": "2026-12-05T10:00:00Z"},
                {"type": "PodScheduled", "lastTransitionTime": scheduled},
            ],
            "containerStatuses": [{"name": "evaluator", "state": {"terminated": {"finishedAt": finished}}}],
        },
    }


def test_held_is_scheduling_to_end_times_gpus_and_serving_is_ready_to_last_reply() -> None:
    record = [{"ready": 1000.0}, {"reply": 1005.0}, {"reply": 1030.0}, {"reply": 1010.0}]
    pods = [
        _pod("2026-12-05T09:59:00Z", "2026-12-05T10:00:00Z", gpus=0),  # a CPU stage: not counted
        _pod("2026-12-05T10:00:00Z", "2026-12-05T10:01:30Z", gpus=2),
        _pod("2026-12-05T10:02:00Z", "2026-12-05T10:02:10Z", gpus=2),  # a retried GPU pod: counted
    ]
    m = gpu_held_vs_serving("x", pods, record)
    assert (m.gpu_held_s, m.serving_s, m.replies, m.gpu_pods, m.gpus) == (200.0, 30.0, 3, 2, 2)
    assert m.ratio == round(200 / 30, 2)


def test_no_reply_is_an_infinite_ratio_not_a_division_error() -> None:
    m = gpu_held_vs_serving("x", [_pod("2026-12-05T10:00:00Z", "2026-12-05T10:00:10Z")], [{"ready": 5.0}])
    assert m.serving_s == 0.0 and m.ratio == float("inf")


def test_the_stub_vllm_and_model_folder(tmp_path) -> None:
    import subprocess

    script = stub_vllm(tmp_path / "bin")
    assert script.name == "vllm" and script.stat().st_mode & 0o111
    out = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert "serve" in out.stdout
    folder = model_folder(tmp_path)
    assert (folder / "config.json").is_file() and (folder / "chat_template.jinja").is_file()
