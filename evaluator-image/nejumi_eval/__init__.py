"""nejumi-eval: the Nejumi LLM Leaderboard Neo evaluation (jaster + MT-bench-jp) as a program.

Importing this package is cheap on purpose: the operator imports its spec/result models, so
nothing here may pull in torch, transformers, vllm, openai or wandb at import time.
"""

__version__ = "0.1.0"
