"""MT-bench-jp as a runnable benchmark: two-turn answers, pipelined judging, tables and scores.

Scheduling (protocol §4, §5 and the design's GPU rule): every question's turn 1 starts at once;
a question's turn 2 starts as soon as its turn 1 returns; each judgment starts as soon as the
answer it grades exists, on the judge's own client and concurrency limit. The model server is
needed only until the last answer, so the pipeline stops it while judging may still run.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from tqdm.auto import tqdm

from nejumi_eval.api.v1alpha1.spec import MtbenchSpec
from nejumi_eval.api.v1alpha1.summary import BenchmarkSummary
from nejumi_eval.benchmarks.base import BenchmarkOutput, RunContext
from nejumi_eval.benchmarks.mtbench.data import MTBenchData, Question, default_mirror, load_variant
from nejumi_eval.benchmarks.mtbench.generation import (
    generation_params,
    postprocess_answer,
    turn1_messages,
    turn2_messages,
)
from nejumi_eval.benchmarks.mtbench.judge import judge_messages, parse_rating
from nejumi_eval.benchmarks.mtbench.protocol import (
    JUDGE_DEFAULTS,
    PROTOCOL,
    judge_prompt_name,
    uses_reference,
)
from nejumi_eval.benchmarks.mtbench.reading import (
    ANSWERS_TABLE,
    LEADERBOARD_TABLE,
    OUTPUT_TABLE,
    QUESTION_TABLE,
    RADAR_TABLE,
    READING,
    MtbenchReading,
)
from nejumi_eval.benchmarks.mtbench.scoring import INVALID_SCORE, MtbenchScores, summarize
from nejumi_eval.benchmarks.registry import register
from nejumi_eval.errors import unwrap
from nejumi_eval.runtime.client.client import CRITICAL_PATH, InferenceClient
from nejumi_eval.runtime.client.models import ChatMessage, ChatRequest, InferenceResult


def _chat(messages: list[dict[str, str]], **sampling: Any) -> ChatRequest:
    return ChatRequest(messages=[ChatMessage(**m) for m in messages], **sampling)


@dataclass
class Answer:
    text: str
    result: InferenceResult
    temperature: float
    max_new_tokens: int
    tstamp: float = field(default_factory=time.time)
    """When the answer arrived (a judgment of it is always later)."""

    def record(self) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            "max_new_tokens": self.max_new_tokens,
            "finish_reason": self.result.finish_reason,
            "prompt_tokens": self.result.prompt_tokens,
            "completion_tokens": self.result.completion_tokens,
            "error": self.result.error,
            "truncated": self.result.truncated,
        }


@dataclass
class MtbenchRun:
    """One model's MT-bench: answers from `client`, judgments from `judge` (None: not judged)."""

    spec: MtbenchSpec
    data: MTBenchData
    judge: InferenceClient | None
    progress: bool = True
    max_new_tokens_cap: int | None = None
    chat_template: str | None = None
    answers: dict[int, list[Answer]] = field(default_factory=dict)
    judgments: list[dict[str, Any]] = field(default_factory=list)
    _judge_tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _bars: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        spec: MtbenchSpec,
        judge: InferenceClient | None,
        progress: bool = True,
        max_new_tokens_cap: int | None = None,
        chat_template: str | None = None,
    ) -> MtbenchRun:
        data = load_variant(spec.variant, default_mirror())
        return cls(spec, data, judge, progress, max_new_tokens_cap, chat_template)

    @property
    def max_new_tokens(self) -> int:
        """1024 per turn (§4), unless a smoke-test cap lowers it."""
        full = PROTOCOL.generation.max_new_tokens
        return min(full, self.max_new_tokens_cap) if self.max_new_tokens_cap else full

    @property
    def questions(self) -> list[Question]:
        cap = self.spec.questions_per_category
        if cap is None:
            return self.data.questions
        seen: dict[str, int] = {}
        chosen = []
        for q in self.data.questions:
            seen[q.category] = seen.get(q.category, 0) + 1
            if seen[q.category] <= cap:
                chosen.append(q)
        return chosen

    # ---- answers ---------------------------------------------------------------------------

    async def answer_all(self, client: InferenceClient) -> None:
        """Both turns of every question; judgments are scheduled as answers arrive."""
        total = 2 * len(self.questions)
        self._bars["answers"] = tqdm(
            total=total, desc="mtbench answers", unit="turn", disable=not self.progress
        )
        if self.judge is not None:
            self._bars["judge"] = tqdm(
                total=total, desc="mtbench judge", unit="call", disable=not self.progress
            )
        try:
            async with asyncio.TaskGroup() as group:
                for question in self.questions:
                    group.create_task(self._answer(client, question))
        except BaseExceptionGroup as eg:
            raise unwrap(eg) from None  # a typed error keeps its message and exit code
        finally:
            self._bars["answers"].close()

    async def _turn(
        self, client: InferenceClient, question: Question, messages: list[dict[str, str]]
    ) -> Answer:
        params = generation_params(question.category)
        request = _chat(
            messages,
            max_tokens=self.max_new_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            seed=params.seed,
        )
        # Turn 2 and the judgment wait for this answer: it goes before queued single-shot work.
        turn = len(messages) // 2 + 1
        label = f"mtbench question {question.question_id} turn {turn}"
        result = await client.generate(request, priority=CRITICAL_PATH, label=label)
        self._bars["answers"].update(1)
        text = postprocess_answer(result.text) if result.ok else ""
        return Answer(text, result, params.temperature, self.max_new_tokens)

    async def _answer(self, client: InferenceClient, question: Question) -> None:
        first = await self._turn(client, question, turn1_messages(question))
        self.answers[question.question_id] = [first]
        self._schedule_judge(question, 1)
        second = await self._turn(client, question, turn2_messages(question, first.text))
        self.answers[question.question_id].append(second)
        self._schedule_judge(question, 2)

    # ---- judging ---------------------------------------------------------------------------

    def _schedule_judge(self, question: Question, turn: int) -> None:
        if self.judge is not None:
            self._judge_tasks.append(asyncio.create_task(self._judge_one(question, turn)))

    async def _judge_one(self, question: Question, turn: int) -> None:
        """Up to 3 calls when the judgment has no rating (§5.4); each re-call bypasses the cache."""
        assert self.judge is not None
        answers = [a.text for a in self.answers[question.question_id]]
        answers += [""] * (2 - len(answers))  # turn 1 is judged before turn 2 exists
        reference = (
            self.data.references[question.question_id].turns if uses_reference(question.category) else None
        )
        messages = judge_messages(question.model_dump(), answers, turn, reference)
        usage: list[dict[str, int | None]] = []
        result: InferenceResult | None = None
        score: float | None = None
        for attempt in range(JUDGE_DEFAULTS.max_calls):
            request = _chat(
                messages,
                max_tokens=JUDGE_DEFAULTS.max_tokens,
                temperature=JUDGE_DEFAULTS.temperature,
                attempt=attempt,
            )
            label = f"mtbench judgment of question {question.question_id} turn {turn}"
            result = await self.judge.generate(request, label=label)
            usage.append(
                {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens}
            )
            if not result.ok:
                break
            score = parse_rating(result.text)
            if score is not None:
                break
        assert result is not None
        reason = None if score is not None else ("judge_error" if not result.ok else "no_rating")
        self.judgments.append(
            {
                "question_id": question.question_id,
                "category": question.category,
                "turn": turn,
                "question": question.turns[turn - 1],
                "answer": answers[turn - 1],
                "judge_model": self.judge.settings.model,
                "judge_model_returned": result.model,
                "judge_prompt": judge_prompt_name(question.category, turn),
                "messages": messages,
                "judgment": result.text,
                "judgment_truncated": result.truncated,
                "score": score if score is not None else INVALID_SCORE,
                "valid": score is not None,
                "invalid_reason": reason,
                "judge_error": result.error,
                "attempts": len(usage),
                "reference_used": reference is not None,
                "prompt_tokens": sum(u["prompt_tokens"] or 0 for u in usage),
                "completion_tokens": sum(u["completion_tokens"] or 0 for u in usage),
                "usage": usage,
                "tstamp": time.time(),
            }
        )
        self._bars["judge"].update(1)

    async def judged(self) -> None:
        """Wait for every scheduled judgment (call after `answer_all`)."""
        try:
            # Every judgment runs to its end; then the first typed failure (a judge lost) is raised.
            done = await asyncio.gather(*self._judge_tasks, return_exceptions=True)
            errors = [e for e in done if isinstance(e, BaseException)]
            if errors:
                raise errors[0]
        finally:
            if "judge" in self._bars:
                self._bars["judge"].close()

    # ---- results ---------------------------------------------------------------------------

    @property
    def generation_failures(self) -> int:
        return sum(1 for turns in self.answers.values() for a in turns if not a.result.ok)

    @property
    def truncated_answers(self) -> int:
        """Model answers cut to the answer cap (judged, and fed to turn 2, as cut)."""
        return sum(1 for turns in self.answers.values() for a in turns if a.result.truncated)

    def scores(self) -> MtbenchScores | None:
        if self.judge is None:
            return None
        return summarize(self.judgments, n_generation_failures=self.generation_failures)

    def answer_rows(self, model_id: str) -> list[dict[str, Any]]:
        """FastChat's model-answer format plus per-turn sampling, finish reason and tokens (§4)."""
        rows = []
        for q in self.questions:
            turns = self.answers.get(q.question_id, [])
            rows.append(
                {
                    "question_id": q.question_id,
                    "answer_id": hashlib.sha256(f"{model_id}:{q.question_id}".encode()).hexdigest()[:22],
                    "model_id": model_id,
                    "category": q.category,
                    "choices": [{"index": 0, "turns": [a.text for a in turns]}],
                    "turn_details": [a.record() for a in turns],
                    "tstamp": max((a.tstamp for a in turns), default=time.time()),
                }
            )
        return rows

    def output_rows(self) -> list[dict[str, Any]]:
        """`mtbench_output_table`: one row per judgment, in question/turn order."""
        return sorted(self.judgments, key=lambda r: (r["question_id"], r["turn"]))

    def question_rows(self) -> list[dict[str, Any]]:
        """80 rows: the question, both answers, both scores (-1 where invalid or not judged)."""
        by_key = {(j["question_id"], j["turn"]): j["score"] for j in self.judgments}
        rows = []
        for q in self.questions:
            turns = [a.text for a in self.answers.get(q.question_id, [])] + ["", ""]
            rows.append(
                {
                    "question_id": q.question_id,
                    "category": q.category,
                    "turn1_question": q.turns[0],
                    "turn1_answer": turns[0],
                    "turn2_question": q.turns[1],
                    "turn2_answer": turns[1],
                    "turn1_score": by_key.get((q.question_id, 1), INVALID_SCORE),
                    "turn2_score": by_key.get((q.question_id, 2), INVALID_SCORE),
                }
            )
        return rows

    def provenance(self, chat_template: str | None) -> dict[str, Any]:
        """Run fields of §7 that are not scores."""
        template = None
        if chat_template:
            template = {
                "path": chat_template,
                "sha256": hashlib.sha256(Path(chat_template).read_bytes()).hexdigest(),
            }
        return {
            "benchmark": "mtbench",
            "protocol": "neo",
            "variant": self.spec.variant,
            "files": {role: {"path": f.path, "sha256": f.sha256} for role, f in self.data.files.items()},
            "questions": len(self.questions),
            "judge": None
            if self.judge is None
            else {
                "requested": self.judge.settings.model,
                "returned": sorted(
                    {j["judge_model_returned"] for j in self.judgments if j["judge_model_returned"]}
                ),
                "temperature": JUDGE_DEFAULTS.temperature,
                "max_tokens": JUDGE_DEFAULTS.max_tokens,
                "n": JUDGE_DEFAULTS.n,
            },
            "generation_mode": "chat",
            "chat_template": template or "the model's own",
            "sampling": {q.category: generation_params(q.category).model_dump() for q in self.questions},
        }

    # ---- the Benchmark seam (nejumi_eval.benchmarks.base) ------------------------------------

    def describe_plan(self) -> str:
        judged = f", judged by {self.judge.settings.model}" if self.judge else ", not judged"
        return f"{len(self.questions)} questions × 2 turns{judged}"

    def counts(self) -> dict[str, tuple[int, int]]:
        total = 2 * len(self.questions)
        out = {"mtbench": (sum(len(t) for t in self.answers.values()), total)}
        if self.judge is not None:
            out["judged"] = (len(self.judgments), total)
        return out

    async def generate(self, client: InferenceClient) -> None:
        await self.answer_all(client)

    async def finish(self) -> None:
        await self.judged()

    @property
    def capped(self) -> bool:
        return len(self.questions) < len(self.data.questions) or self.max_new_tokens_cap is not None

    def output(self, model: str, failure: BaseException | None = None) -> BenchmarkOutput:
        """`failure`: judging could not finish; answers and the judgments made are kept, nothing is
        scored (a partial judgment set would be a silently wrong number)."""
        scores = self.scores() if failure is None else None
        out = BenchmarkOutput(
            summary=BenchmarkSummary(
                scored=scores is not None,
                avg=scores.mtbench_score if scores else None,
                categories=scores.category_means if scores else {},
                samples=scores.n_judgments if scores else 0,
                invalid=scores.n_invalid if scores else 0,
                failures=self.generation_failures,
                truncated_answers=self.truncated_answers,
                degraded=scores.degraded if scores else self.generation_failures > 0,
                capped=self.capped,
                synthetic_judge=scores is not None and bool(self.spec.judge and self.spec.judge.synthetic),
            ),
            tables={
                ANSWERS_TABLE: self.answer_rows(model),
                QUESTION_TABLE: self.question_rows(),
            },
            record={
                **self.provenance(self.chat_template),
                "judged": scores is not None,
                "truncated_answers": self.truncated_answers,
                "truncated_judgments": sum(1 for j in self.judgments if j["judgment_truncated"]),
            },
        )
        if failure is not None:
            out.tables[OUTPUT_TABLE] = self.output_rows()  # the judgments made, unscored
            out.record["error"] = str(failure)
        if scores is not None:
            means = scores.category_means
            out.tables[OUTPUT_TABLE] = self.output_rows()
            board = {"model_name": model, **means, "AVG": scores.mtbench_score}
            if out.summary.synthetic_judge:  # never a bare number that reads as a real judge's
                board["synthetic_judge"] = True
            out.tables[LEADERBOARD_TABLE] = [board]
            out.tables[RADAR_TABLE] = [{"category": c, "score": v} for c, v in means.items()]
            out.record.update(scores.model_dump())
            synthetic = out.summary.synthetic_judge
            out.leaderboard = {
                "AVG": scores.mtbench_score,
                "degraded": scores.degraded,
                "synthetic_judge": synthetic,
                **means,
            }
            out.scalars = {**means, "AVG": scores.mtbench_score, "invalid": scores.n_invalid}
            out.scalars["synthetic_judge"] = synthetic
        return out


@register
class Mtbench:
    name: ClassVar[str] = "mtbench"
    chats: ClassVar[bool] = True
    title: ClassVar[str] = "MT-bench"
    spec_model: ClassVar[type[MtbenchSpec]] = MtbenchSpec
    reading: ClassVar[MtbenchReading] = READING

    def describe(self) -> dict[str, Any]:
        from nejumi_eval.benchmarks.mtbench.catalog import describe

        return describe()

    def format_description(self, doc: dict[str, Any]) -> str:
        from nejumi_eval.benchmarks.mtbench.catalog import format_text

        return format_text(doc)

    def plan(self, section: MtbenchSpec, ctx: RunContext) -> MtbenchRun:
        judge = ctx.open_judge(section.judge, "benchmarks.mtbench.judge") if section.judge else None
        return MtbenchRun.create(
            section, judge, ctx.progress, ctx.max_new_tokens_cap, ctx.spec.model.chat_template
        )
