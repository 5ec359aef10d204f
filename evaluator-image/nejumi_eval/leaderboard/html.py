"""The board as one self-contained HTML page: it opens from file:// on a machine with no network.

Everything is inside the file: plotly.js (the copy bundled with the `plotly` package), the page's
CSS and vanilla JS (`page/`), the board as JSON, and the per-question data as a second JSON
document, gzipped and base64-encoded, that the page decompresses (the browser's own
`DecompressionStream`) and parses only when the drill-down is first opened: a board of 100 models
carries ~100 MB of prompts and outputs as text, a fifth of that compressed, and the ranking should
not wait for it.

The board's JSON sits in a `<script type="application/json">` element with every `<` escaped as
`\\u003c`, and the questions are base64 (no `<` at all), so no prompt or model output can close
the element or inject markup; the page's JS renders all text through `textContent`, never
`innerHTML`.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import re
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from nejumi_eval.api.v1alpha1.formula import OVERALL
from nejumi_eval.benchmarks import registry
from nejumi_eval.leaderboard.compare import Board
from nejumi_eval.runtime.files import atomic_write_text

_TOKEN = re.compile(r"__(PLOTLY|CSS|JS|BOARD|QUESTIONS|TITLE)__")


def _asset(name: str) -> str:
    return resources.files("nejumi_eval.leaderboard").joinpath("page", name).read_text("utf-8")


def _json_for_script(doc: Any) -> str:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")


def _json_chunks(doc: Any, depth: int = 2) -> Iterator[str]:
    """`doc` as compact JSON, an item of its first `depth` levels at a time (a question, one
    evaluation's answers): the text of a hundred evaluations' prompts and answers (~100 MB) is never
    one string (json.dumps of the whole), only its compressed form is."""
    if depth == 0:
        yield json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    elif isinstance(doc, dict):
        yield "{"
        for i, (key, value) in enumerate(doc.items()):
            yield ("," if i else "") + json.dumps(str(key), ensure_ascii=False) + ":"
            yield from _json_chunks(value, depth - 1)
        yield "}"
    elif isinstance(doc, list):
        yield "["
        for i, value in enumerate(doc):
            yield ("," if i else "") + json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        yield "]"
    else:
        yield json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


def _gzip_base64(doc: Any) -> str:
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=6, mtime=0) as packed:
        for chunk in _json_chunks(doc):
            packed.write(chunk.encode("utf-8"))
    return base64.b64encode(buffer.getbuffer()).decode("ascii")


def read_questions(page: str) -> dict[str, Any]:
    """The per-question document of a rendered page (tests, tools): what the page decodes."""
    start = page.index('id="questions-data"')
    start = page.index(">", start) + 1
    return json.loads(gzip.decompress(base64.b64decode(page[start : page.index("</script>", start)])))


def _plotly_js() -> str:
    try:
        from plotly.offline import get_plotlyjs
    except ImportError as exc:  # an install without the `eval` extra
        raise RuntimeError("the HTML leaderboard needs plotly: pip install 'nejumi[eval]'") from exc
    return get_plotlyjs()


def benchmark_columns(board: Board) -> list[dict[str, Any]]:
    """Per benchmark: name, title, its categories in first-seen order, its score scale (a term of
    the formula is on the scale of its divisor, e.g. 0–1 or 0–10), and what its reader says people
    call a stratum and a question's score, and which provenance details it shows beside a model.
    The page renders whatever this says: it names no benchmark."""
    lb = board.leaderboard
    scale = {t.benchmark: t.divide_by for t in OVERALL.terms} if lb.formula == OVERALL.name else {}
    names = list(lb.formula_benchmarks)
    for entry in lb.entries:
        names.extend(n for n in entry.benchmarks if n not in names)
    out = []
    for name in names:
        title, categories = name, list[str]()
        for entry in lb.entries:
            result = entry.benchmarks.get(name)
            if result is None:
                continue
            title = result.title
            categories.extend(c for c in result.categories if c not in categories)
        labels = registry.labels(name)
        out.append(
            {
                "name": name,
                "title": title,
                "categories": categories,
                "scale": scale.get(name, 1),
                "stratum": labels.stratum,
                "unit": labels.unit,
                "shown": [{"key": key, "label": label} for key, label in labels.shown],
            }
        )
    return out


def questions_document(board: Board) -> dict[str, Any]:
    """Questions (each once, in the order first met) and every entry's answers by question index.

    A question is identified by benchmark, stratum (dataset or category) and id. Its prompt is the
    first entry's; an entry that saw another prompt for it (another template) carries its own. Each
    answer carries `u`, the question's `[sum, count]` as the benchmark's design pools it (null
    without a score): the page's diff and spread order use it, whatever the benchmark."""
    index: dict[str, int] = {}
    questions: list[dict[str, Any]] = []
    answers: dict[str, dict[str, Any]] = {}
    for entry in board.leaderboard.entries:
        evaluation = board.evaluations[entry.id]
        mine: dict[str, Any] = {}
        for data in evaluation.questions.values():
            for row in data.rows:
                if row.key not in index:
                    index[row.key] = len(questions)
                    questions.append(
                        {
                            "b": row.benchmark,
                            "s": row.stratum,
                            "id": row.id,
                            "prompt": row.prompt,
                            "gold": row.gold,
                            "turns": row.turns,
                        }
                    )
                answer: dict[str, Any] = dict(row.answer)
                answer["u"] = list(row.unit) if row.unit is not None and row.unit[1] else None
                if row.prompt != questions[index[row.key]]["prompt"]:
                    answer["prompt"] = row.prompt
                mine[str(index[row.key])] = answer
        answers[entry.id] = mine
    return {"questions": questions, "answers": answers}


def render(board: Board, title: str = "Nejumi leaderboard") -> str:
    """The page as a string."""
    doc = {
        "board": board.leaderboard.model_dump(mode="json"),
        "benchmarks": benchmark_columns(board),
    }
    parts = {
        "TITLE": title.replace("&", "&amp;").replace("<", "&lt;"),
        "CSS": _asset("page.css"),
        "JS": _asset("page.js"),
        "PLOTLY": _plotly_js(),
        "BOARD": _json_for_script(doc),
        "QUESTIONS": _gzip_base64(questions_document(board)),
    }
    # One pass: text put in for one token is never scanned for another.
    return _TOKEN.sub(lambda m: parts[m.group(1)], _asset("page.html"))


def write_html(board: Board, path: str | Path, title: str = "Nejumi leaderboard") -> Path:
    target = Path(path)
    atomic_write_text(target, render(board, title))
    return target
