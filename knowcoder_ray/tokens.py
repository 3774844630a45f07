"""Token counts, one meaning everywhere (corpus rows' `n_tokens`, schema shards' prompt budgets): a Hugging Face
tokenizer's ids without special tokens, else the larger of words and characters / 4 (about a LLaMA tokenizer's)."""
from __future__ import annotations

import math

from knowcoder_ray import storage

ESTIMATE = "estimate:max(words,chars/4)"


class TokenCounter:
    """`counter(texts)` -> token counts. `tokenizer`: None (the estimate), a loaded tokenizer, or a local
    folder or URI of one, loaded on first use (so a counter travels to Ray workers as a path)."""

    def __init__(self, tokenizer=None) -> None:
        self.path = tokenizer if isinstance(tokenizer, str) else None
        self._tokenizer = None if self.path else tokenizer

    @property
    def kind(self) -> str:
        """What the counts mean, as recorded in corpus manifests."""
        if self.path:
            return f"hf:{self.path}"
        return f"hf:{self._tokenizer.name_or_path}" if self._tokenizer is not None else ESTIMATE

    def __call__(self, texts: list[str]) -> list[int]:
        if self.path is None and self._tokenizer is None:
            return [max(len(t.split()), math.ceil(len(t) / 4)) for t in texts]
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(storage.local_copy(self.path), local_files_only=True)
        counts: list[int] = []
        for i in range(0, len(texts), 512):  # bounded batches: the ids of a whole shard need not be held at once
            ids = self._tokenizer(list(texts[i:i + 512]), add_special_tokens=False)["input_ids"]
            counts += [len(x) for x in ids]
        return counts
