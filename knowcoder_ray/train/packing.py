"""Tokenization and sequence packing. Several samples share one row of `seq_len` tokens, each with its own
attention: position ids restart at 0 at every sample, which the Llama models of transformers >= 5 turn into a
block-diagonal causal mask without attention mask and KV cache (training with sdpa: engine.packed_sdpa). The
first token of every sample is outside the loss; SFT samples mask their prompt tokens (labels -100).
`packing=False` pads every sample to a row of its own, as the official KnowCoder code does.
"""
from __future__ import annotations

import bisect
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

IGNORE = -100  # label of tokens outside the loss


@dataclass(frozen=True)
class Sample:
    """One tokenized sample: `ids` (BOS ... EOS) with its first `n_masked` tokens outside the loss."""

    ids: tuple[int, ...]
    n_masked: int = 1
    truncated: bool = False


def text_samples(tokenizer, text: str, seq_len: int) -> list[Sample]:
    """Pretraining text: BOS + text + EOS, cut into `seq_len` chunks (each chunk a sample of its own)."""
    ids = list(tokenizer(text)["input_ids"]) + [tokenizer.eos_token_id]
    return [Sample(tuple(ids[i:i + seq_len])) for i in range(0, len(ids), seq_len)]


def pair_sample(tokenizer, prompt: str, output: str, seq_len: int) -> Sample:
    """SFT pair: BOS + prompt + output + EOS with the prompt (as tokenized at inference) outside the loss.
    Longer than `seq_len`: the end is cut (the official `cutoff_len`); a prompt that leaves no room raises."""
    full = list(tokenizer(prompt + output)["input_ids"]) + [tokenizer.eos_token_id]
    n_prompt = len(os.path.commonprefix([tokenizer(prompt)["input_ids"], full]))  # shared leading ids
    if n_prompt >= seq_len:
        raise ValueError(f"prompt leaves no room for the output: {n_prompt} prompt tokens, seq_len {seq_len}")
    return Sample(tuple(full[:seq_len]), max(n_prompt, 1), truncated=len(full) > seq_len)


def bins_best_fit(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Best-fit-decreasing bin packing: indices of `lengths` grouped into bins of at most `capacity`."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (room left, bin index), sorted
    for i in order:
        n = lengths[i]
        if n > capacity:
            raise ValueError(f"sample of {n} tokens exceeds the bin capacity {capacity}")
        j = bisect.bisect_left(free, (n, -1))
        if j < len(free):
            room, b = free.pop(j)
        else:
            room, b = capacity, len(bins)
            bins.append([])
        bins[b].append(i)
        if room - n > 0:
            bisect.insort(free, (room - n, b))
    return bins


def pack(samples: Sequence[Sample], seq_len: int, pad_id: int, packing: bool = True) -> dict[str, np.ndarray]:
    """Rows of `seq_len` tokens: input_ids, labels and position ids (restarting at every sample and at
    the padding), plus per-row counts of samples, real (non-pad) tokens and truncated samples."""
    groups = bins_best_fit([len(s.ids) for s in samples], seq_len) if packing else [[i] for i in range(len(samples))]
    n = len(groups)
    out = {"input_ids": np.full((n, seq_len), pad_id, dtype=np.int32),
           "labels": np.full((n, seq_len), IGNORE, dtype=np.int32),
           "position_ids": np.zeros((n, seq_len), dtype=np.int32),
           **{k: np.zeros(n, dtype=np.int32) for k in ("n_samples", "n_tokens", "n_truncated")}}
    input_ids, labels, position_ids = out["input_ids"], out["labels"], out["position_ids"]
    for r, group in enumerate(groups):
        at = 0
        for i in group:
            s = samples[i]
            k = len(s.ids)
            input_ids[r, at:at + k] = s.ids
            labels[r, at + s.n_masked:at + k] = s.ids[s.n_masked:]
            position_ids[r, at:at + k] = np.arange(k)
            at += k
        position_ids[r, at:] = np.arange(seq_len - at)  # padding forms a segment of its own
        out["n_samples"][r] = len(group)
        out["n_tokens"][r] = at
        out["n_truncated"][r] = sum(samples[i].truncated for i in group)
    return out
