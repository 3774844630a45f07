"""Inference engines: `Prompt`s (or strings) in, generated texts out (greedy, cut before the first `STOP` and,
with `stop_at_repeat`, at the first item written twice). Prompts over `max_prompt_tokens` keep their first
`keep_head` + last `keep_tail` tokens, as the official evaluation does (3,500 -> 1,500 + 2,000).

`TransformersEngine` batches prompts with padding before the sentence part and runs the schema prefix a
shard's prompts share once per shard (a small LRU of KV caches). Each prompt sees exactly the tokens of
plain generation (the prefix is cut from its own tokenization).
"""
from __future__ import annotations

import copy
import inspect
import json
import os
import pkgutil
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Annotated, Literal, Protocol

from pydantic import Field, model_validator

from knowcoder_ray import storage
from knowcoder_ray.codec.render import STOP
from knowcoder_ray.settings import Count, Positive, Section
from knowcoder_ray.storage import local_copy
from knowcoder_ray.train.merge import adapter_base


@dataclass(frozen=True)
class Prompt:
    """A full prompt; its first `prefix_chars` characters (the schema prefix) are shared with other prompts,
    which lets an engine reuse their KV cache."""

    text: str
    prefix_chars: int = 0


class EngineConfig(Section):
    max_new_tokens: Positive = 640
    batch_size: Positive = 8
    max_prompt_tokens: Positive = 3500   # official cut: longer prompts keep head + tail tokens
    keep_head: Count = 1500
    keep_tail: Count = 2000
    prefix_reuse: bool = True
    prefix_cache_size: Positive = 4      # schema prefixes kept per engine (LRU)
    device: Annotated[str, Field(pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$")] = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # auto: bf16 on GPU, fp32 on CPU
    # end an output at its first repeated item (`drop_repeats`); False: as the released evaluation, which
    # generates on to the stop quote or max_new_tokens, so `official` metrics count every repeat
    stop_at_repeat: bool = True

    @model_validator(mode="after")
    def _cut(self) -> EngineConfig:  # more kept than the cut allows would repeat the middle tokens
        if self.keep_head + self.keep_tail > self.max_prompt_tokens:
            raise ValueError(f"keep_head + keep_tail ({self.keep_head} + {self.keep_tail}) exceeds "
                             f"max_prompt_tokens ({self.max_prompt_tokens})")
        return self


class Engine(Protocol):
    def generate(self, prompts: Sequence[Prompt | str]) -> list[str]: ...


def as_prompt(p: Prompt | str) -> Prompt:
    return p if isinstance(p, Prompt) else Prompt(str(p))


def cut_at_stop(text: str) -> str:
    """The generated text before the first closing triple quote. An undecodable tail (a multi-byte
    character cut by the token limit or by the stop string) is dropped, as vLLM's detokenizer does."""
    return text.partition(STOP)[0].rstrip("\ufffd")


def finish(text: str, config: EngineConfig) -> str:
    """A generated text as every engine path returns it."""
    text = cut_at_stop(text)
    return drop_repeats(text) if config.stop_at_repeat else text


def first_repeat(text: str) -> int | None:
    """Index in `text` of the first completed line that repeats an earlier item, or None."""
    seen, at = set(), 0
    for line in text.split("\n")[:-1]:
        item = line.strip().rstrip(",").strip()
        if item in seen:
            return at
        if item not in ("", "results = [", "]"):
            seen.add(item)
        at += len(line) + 1
    return None


def drop_repeats(text: str) -> str:
    """Greedy decoding of a small model can loop (`Location("America"),` again and again until the token
    limit). An extraction lists each item once, so the list ends before the first repeated item."""
    at = first_repeat(text)
    if at is None:
        return text
    head = text[:at].rstrip()
    return head.rstrip(",") + "\n]" if "results = [" in head else head


def truncate_ids(ids: list[int], max_tokens: int = 3500, head: int = 1500, tail: int = 2000) -> list[int]:
    """The official cut: a prompt over `max_tokens` keeps its first `head` and last `tail` tokens."""
    return ids if len(ids) <= max_tokens else ids[:head] + ids[len(ids) - tail:]


def encode_prompt(tokenizer, text: str, config: EngineConfig) -> list[int]:
    """A prompt's token ids as every engine feeds them to the model: the official cut applied."""
    return truncate_ids(tokenizer(text)["input_ids"], config.max_prompt_tokens, config.keep_head, config.keep_tail)


def tokenizer_folder(checkpoint: str) -> str:
    """Where a checkpoint's tokenizer is: the checkpoint itself, or the base of an adapter saved without one."""
    base = adapter_base(checkpoint)
    return base if base and not storage.isfile(storage.join(checkpoint, "tokenizer_config.json")) else checkpoint


def check_checkpoint_folder(path: str) -> None:
    """Checked before loading (else the tokenizer fails later, with a traceback)."""
    if not any(storage.isfile(storage.join(path, f)) for f in ("config.json", "adapter_config.json")):
        raise ValueError(f"{path} is not a model folder: it holds no config.json or adapter_config.json")


def check_context(checkpoint: str, max_new_tokens: int, context: int | None = None) -> None:
    """max_new_tokens over the model's context (`context`, else the model's or adapter base's config.json) is
    a ValueError: the generation cache is sized by it, and would fail only at the first generate."""
    if context is None:
        try:
            config = json.loads(storage.read_text(storage.join(adapter_base(checkpoint) or checkpoint, "config.json")))
            context = config.get("max_position_embeddings")
        except (OSError, ValueError, AttributeError):  # no readable config: the engine's load will say so
            return
    if isinstance(context, int) and max_new_tokens > context:
        raise ValueError(f"max_new_tokens {max_new_tokens} exceeds the model's context of {context} tokens")


class TransformersEngine:
    """Greedy generation with Hugging Face transformers; batching and schema-prefix KV reuse. `model_path`
    is a model folder or a PEFT adapter folder (merged into its base on load)."""

    def __init__(self, model_path: str | Path, config: EngineConfig | None = None) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, StoppingCriteriaList
        from transformers.generation.stopping_criteria import StopStringCriteria

        self.config = cfg = config or EngineConfig()
        self.device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        default_dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        dtype = getattr(torch, cfg.dtype) if cfg.dtype != "auto" else default_dtype
        base = adapter_base(model_path)
        local = local_copy(str(model_path))  # a bucket URI is fetched once per node (so is its base)
        self.tokenizer = AutoTokenizer.from_pretrained(local_copy(tokenizer_folder(str(model_path))))
        model = AutoModelForCausalLM.from_pretrained(local_copy(base) if base is not None else local, dtype=dtype)
        if base is not None:
            from peft import PeftModel
            model = PeftModel.from_pretrained(model, local).merge_and_unload()
        check_context(str(model_path), cfg.max_new_tokens, getattr(model.config, "max_position_embeddings", None))
        self.model = model.to(self.device).eval()
        eos = self.tokenizer.eos_token_id
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else eos
        self.generation_config = GenerationConfig(max_new_tokens=cfg.max_new_tokens, do_sample=False, num_beams=1,
                                                  pad_token_id=self.pad_id, eos_token_id=eos,
                                                  bos_token_id=self.tokenizer.bos_token_id)
        self._repeat_stop = RepeatedItemStop(self.tokenizer)
        self.stopping = StoppingCriteriaList([StopStringCriteria(self.tokenizer, [STOP])]
                                             + [self._repeat_stop] * self.config.stop_at_repeat)
        self._prefix_ids = lru_cache(maxsize=64)(lambda head: self.tokenizer(head)["input_ids"])
        self._prefix_cache = lru_cache(maxsize=self.config.prefix_cache_size)(self._run_prefix)
        self._batches = 0
        self._torch = torch
        # transformers >= 5.24 names the cache argument `cache` (`past_key_values` before)
        self._cache_arg = "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"

    @property
    def stats(self) -> dict[str, int]:
        info = self._prefix_cache.cache_info()
        return {"prefix_computed": info.misses, "prefix_reused": info.hits, "batches": self._batches}

    def encode(self, text: str) -> list[int]:
        return encode_prompt(self.tokenizer, text, self.config)

    def _shared_len(self, p: Prompt, ids: list[int]) -> int:
        """Tokens of `ids` in the prompt's shared prefix: the common start of its own and the prefix's tokens (a
        BPE merge across the boundary or the official cut can only shorten it), leaving one to generate from."""
        if not self.config.prefix_reuse or p.prefix_chars <= 0:
            return 0
        prefix_ids = self._prefix_ids(p.text[:p.prefix_chars])
        return min(len(os.path.commonprefix([prefix_ids, ids])), len(ids) - 1)

    def generate(self, prompts: Sequence[Prompt | str]) -> list[str]:
        prompts = [as_prompt(p) for p in prompts]
        ids = [self.encode(p.text) for p in prompts]
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, (p, tokens) in enumerate(zip(prompts, ids)):
            groups.setdefault(tuple(tokens[:self._shared_len(p, tokens)]), []).append(i)
        out: list[str] = [""] * len(prompts)
        bs = max(1, self.config.batch_size)
        for prefix, members in groups.items():
            members.sort(key=lambda i: len(ids[i]))  # similar lengths together: less padding
            for k in range(0, len(members), bs):
                batch = members[k:k + bs]
                for i, t in zip(batch, self._generate_batch(prefix, [ids[i][len(prefix):] for i in batch])):
                    out[i] = t
        return out

    def _run_prefix(self, prefix: tuple[int, ...]):
        """The keys and values of a schema prefix (kept by `_prefix_cache`, an LRU of prefix_cache_size)."""
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.config)
        with self._torch.no_grad():
            self.model(input_ids=self._torch.tensor([prefix], device=self.device), use_cache=True,
                       **{self._cache_arg: cache})
        return cache

    def _batch_cache(self, prefix_cache, rows: int, prompt_len: int):
        """The prefix's keys and values for `rows` rows, with room for the whole generation: a static cache is
        written in place (a dynamic one copies the prefix at each token); sliding-window models keep a dynamic one."""
        from transformers import StaticCache

        if getattr(self.model.config, "sliding_window", None):
            cache = copy.deepcopy(prefix_cache)
            cache.batch_repeat_interleave(rows)
            return cache
        cache = StaticCache(config=self.model.config, max_cache_len=prompt_len + self.config.max_new_tokens)
        for i, layer in enumerate(prefix_cache.layers):
            cache.update(layer.keys.expand(rows, -1, -1, -1), layer.values.expand(rows, -1, -1, -1), i)
        return cache

    def _generate_batch(self, prefix: tuple[int, ...], suffixes: list[list[int]]) -> list[str]:
        """Rows laid out as [prefix | padding | suffix]: the prefix columns line up with the cached keys
        and values; position ids follow the attention mask, so padding shifts no position."""
        torch = self._torch
        n, p, s = len(suffixes), len(prefix), max(len(x) for x in suffixes)
        input_ids = torch.tensor([[*prefix, *[self.pad_id] * (s - len(x)), *x] for x in suffixes], dtype=torch.long)
        mask = torch.tensor([[1] * p + [0] * (s - len(x)) + [1] * len(x) for x in suffixes], dtype=torch.long)
        kwargs = {self._cache_arg: self._batch_cache(self._prefix_cache(prefix), n, p + s)} if p else {}
        self._repeat_stop.start = p + s
        with torch.no_grad():
            out = self.model.generate(input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device),
                                      generation_config=self.generation_config, stopping_criteria=self.stopping,
                                      **kwargs)
        self._batches += 1
        texts = self.tokenizer.batch_decode(out[:, p + s:], skip_special_tokens=True)
        return [finish(t, self.config) for t in texts]


class RepeatedItemStop:
    """A stopping criterion: a row is done once its output repeats a completed item (see drop_repeats).
    Checked only on steps whose new token holds a newline, when a line has just been completed."""

    def __init__(self, tokenizer, start: int = 0) -> None:
        self.tokenizer, self.start = tokenizer, start
        self._ends_line = cache(lambda token: "\n" in tokenizer.decode([token]))  # token id -> holds a newline

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        done = [self._ends_line(int(row[-1])) and first_repeat(
                    self.tokenizer.decode(row[self.start:], skip_special_tokens=True)) is not None
                for row in input_ids]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def load_engine(kind: str, model_path: str | Path, config: EngineConfig | None = None, **engine_kwargs) -> Engine:
    """An engine by name: "transformers", "vllm" (extra keyword arguments go to the vLLM engine) or a
    plugin "module:Class" (e.g. the oracle engine of the tests)."""
    if kind == "transformers":
        if engine_kwargs:
            raise ValueError(f"the transformers engine takes no {sorted(engine_kwargs)}")
        return TransformersEngine(model_path, config)
    kind = "knowcoder_ray.infer.llm:VLLMEngine" if kind == "vllm" else kind
    if ":" in kind:  # a plugin engine "module:Class", built as Class(model_path, config, **engine_kwargs)
        try:
            plugin = pkgutil.resolve_name(kind)
        except (ImportError, AttributeError, ValueError) as e:
            raise ValueError(f"engine {kind!r} cannot be imported: {e}") from None
        if not isinstance(plugin, type):
            raise ValueError(f"engine {kind!r} is not a class")
        return plugin(model_path, config, **engine_kwargs)
    raise ValueError(f"unknown engine {kind!r}; expected 'transformers', 'vllm' or 'module:Class'")
