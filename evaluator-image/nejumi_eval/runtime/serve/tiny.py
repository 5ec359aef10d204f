"""A tiny random-weight causal LM built offline in seconds, for the embedded default and the tests.

Why: the README's main command and the end-to-end tests must run the whole pipeline (serve →
generate → score) on a CPU box with no network. Nothing is downloaded: a byte-level BPE tokenizer
is trained on a small Japanese + English text shipped in the package, a 2-layer Llama with hidden
size 64 gets seeded random weights, and both are saved with ``save_pretrained``. Its answers are
noise, but well-formed noise: real tokenisation (with BOS), a real chat template, EOS, usage.

The build is deterministic (fixed seeds, deterministic BPE training) and cached: a folder whose
marker file matches the spec fingerprint is reused as it is.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict

TINY_MODEL_NAME = "nejumi/tiny-random-llama"
MARKER = "nejumi-tiny.json"
BOS, EOS, PAD = "<s>", "</s>", "<pad>"

# bos first (the tokenizer adds it to raw prompts; apply_chat_template does not, so the template
# writes it), one turn per message closed by EOS, and the assistant header as generation prompt.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}{{ eos_token }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


class TinyModelSpec(BaseModel):
    """Everything that decides the bytes of the built model (its fingerprint)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = 2
    vocab_size: int = 1024
    hidden_size: int = 64
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 8192
    # Untied and wide-initialised, so random weights give varied tokens: tied small embeddings make
    # greedy decoding repeat the prompt's last token ("\n") forever, and every answer blank.
    tie_word_embeddings: bool = False
    initializer_range: float = 0.5
    seed: int = 0

    def fingerprint(self) -> str:
        corpus = _corpus_text()
        payload = json.dumps(self.model_dump(), sort_keys=True) + CHAT_TEMPLATE + corpus
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


class TinyModel(BaseModel):
    """Where the model is and what identifies it (use ``fingerprint`` as the cache revision).

    ``str()``/``os.fspath()`` give the folder, so it can stand wherever a model path is expected.
    """

    path: Path
    name: str = TINY_MODEL_NAME
    fingerprint: str
    built: bool
    build_s: float

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)


def default_cache_dir() -> Path:
    from nejumi_eval.runtime.fetch import cache_root

    return cache_root()


def tiny_model_dir(cache_dir: Path | str | None = None) -> Path:
    """The tiny model's folder inside a cache root (default ``$NEJUMI_CACHE_DIR``)."""
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return root / "models" / "tiny-random-llama"


def _corpus_text() -> str:
    return (
        resources.files("nejumi_eval.runtime.serve").joinpath("tiny_corpus.txt").read_text(encoding="utf-8")
    )


def _read_marker(path: Path) -> dict | None:
    try:
        return json.loads((path / MARKER).read_text())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return None


def build_tiny_model(
    cache_dir: Path | str | None = None,
    *,
    dest: Path | str | None = None,
    spec: TinyModelSpec | None = None,
    force: bool = False,
) -> TinyModel:
    """Build the tiny model, or reuse a build whose fingerprint matches.

    It goes to ``dest`` when given, else to ``<cache_dir>/models/tiny-random-llama``. A folder
    that holds anything but an earlier tiny build is never overwritten.
    """
    spec = spec or TinyModelSpec()
    dest = Path(dest).expanduser() if dest is not None else tiny_model_dir(cache_dir)
    fingerprint = spec.fingerprint()
    marker = _read_marker(dest)
    if not force and marker is not None and marker.get("fingerprint") == fingerprint:
        return TinyModel(path=dest, fingerprint=fingerprint, built=False, build_s=0.0)
    if marker is None and dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise FileExistsError(f"{dest} exists and is not a tiny-model build; refusing to overwrite it")

    started = time.monotonic()
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        _build_into(staging, spec)
        (staging / MARKER).write_text(
            json.dumps({"fingerprint": fingerprint, "name": TINY_MODEL_NAME, "spec": spec.model_dump()})
        )
        if dest.exists():
            shutil.rmtree(dest)  # an empty folder or an older tiny build (checked above)
        staging.rename(dest)  # readers never see a half-written folder
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return TinyModel(path=dest, fingerprint=fingerprint, built=True, build_s=time.monotonic() - started)


def _build_into(folder: Path, spec: TinyModelSpec) -> None:
    # Heavy imports here: the rest of the package must import without the `serve` extra.
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    lines = [line for line in _corpus_text().splitlines() if line.strip()]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=spec.vocab_size,
        special_tokens=[BOS, EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(lines, trainer=trainer)
    bos_id = tokenizer.token_to_id(BOS)
    tokenizer.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
            ),
        ]
    )
    hf_tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        model_max_length=spec.max_position_embeddings,
    )
    hf_tokenizer.chat_template = CHAT_TEMPLATE
    hf_tokenizer.save_pretrained(folder)

    config = LlamaConfig(
        vocab_size=len(hf_tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads,
        max_position_embeddings=spec.max_position_embeddings,
        bos_token_id=bos_id,
        eos_token_id=hf_tokenizer.eos_token_id,
        pad_token_id=hf_tokenizer.pad_token_id,
        tie_word_embeddings=spec.tie_word_embeddings,
        initializer_range=spec.initializer_range,
    )
    torch.manual_seed(spec.seed)
    model = LlamaForCausalLM(config).eval()
    # Neutral decoding defaults: the request decides (no penalties, no sampling unless asked).
    model.generation_config = GenerationConfig(
        bos_token_id=bos_id,
        eos_token_id=hf_tokenizer.eos_token_id,
        pad_token_id=hf_tokenizer.pad_token_id,
    )
    model.save_pretrained(folder)
