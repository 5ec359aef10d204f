"""MT-bench-jp, protocol `neo` (benchmarks/mtbench/protocol-mtbench.md): the pure, protocol-level parts.

Data (variants, sha256 pins, §3 checks), the model-under-test conversation and sampling, the exact
judge messages, the rating parse and the aggregation. No network, no model calls: the pipeline
that sends requests builds on these, and other tools call the stable API below by name.
"""

from nejumi_eval.benchmarks.mtbench.data import (
    DataFile,
    JudgePrompt,
    MTBenchData,
    MTBenchDataError,
    Question,
    Reference,
    default_mirror,
    load_judge_prompts,
    load_questions,
    load_references,
    load_variant,
    variant_files,
)
from nejumi_eval.benchmarks.mtbench.generation import (
    GenerationParams,
    generation_params,
    postprocess_answer,
    turn1_messages,
    turn2_messages,
)
from nejumi_eval.benchmarks.mtbench.judge import judge_messages, parse_rating
from nejumi_eval.benchmarks.mtbench.protocol import (
    CATEGORIES,
    JUDGE_DEFAULTS,
    JudgeParams,
    judge_prompt_name,
    uses_reference,
)
from nejumi_eval.benchmarks.mtbench.scoring import INVALID_SCORE, MtbenchScores, aggregate, overall, summarize

__all__ = [
    "CATEGORIES",
    "INVALID_SCORE",
    "JUDGE_DEFAULTS",
    "DataFile",
    "GenerationParams",
    "JudgeParams",
    "JudgePrompt",
    "MTBenchData",
    "MTBenchDataError",
    "MtbenchScores",
    "Question",
    "Reference",
    "aggregate",
    "default_mirror",
    "generation_params",
    "judge_messages",
    "judge_prompt_name",
    "load_judge_prompts",
    "load_questions",
    "load_references",
    "load_variant",
    "overall",
    "parse_rating",
    "postprocess_answer",
    "summarize",
    "turn1_messages",
    "turn2_messages",
    "uses_reference",
    "variant_files",
]
