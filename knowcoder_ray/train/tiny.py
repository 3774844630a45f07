"""A tiny Llama-architecture model and a BPE tokenizer trained on a corpus, saved as an HF folder: made from
scratch, as CPU runs (tests, the demo, benchmarks) download nothing. The tokenizer is byte-level BPE (tabs and
newlines survive, as code-style prompts need) and adds BOS like the Llama tokenizer.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from knowcoder_ray.storage import is_uri, output_folder

BOS, EOS, PAD, UNK = "<s>", "</s>", "<pad>", "<unk>"


@dataclass(frozen=True)
class TinySpec:
    vocab_size: int = 1024
    hidden_size: int = 64
    intermediate_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    max_position_embeddings: int = 4096


def train_tokenizer(texts: Iterable[str], vocab_size: int = 1024):
    """A byte-level BPE `PreTrainedTokenizerFast` trained on `texts`, adding BOS to every encoding."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[UNK, BOS, EOS, PAD],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    # Llama adds BOS and no EOS when encoding; training appends EOS itself.
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", pair=f"{BOS} $A $B",
                                                       special_tokens=[(BOS, bos_id)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                   unk_token=UNK, model_max_length=TinySpec.max_position_embeddings)


def make_tiny_model(out_dir: str | Path, corpus_texts: Iterable[str], seed: int = 0,
                    spec: TinySpec = TinySpec()) -> Path | str:
    """Write a randomly initialised tiny Llama and its tokenizer to `out_dir`; return the folder."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    texts = [t for t in corpus_texts if isinstance(t, str) and t]
    if not texts:
        raise ValueError("make_tiny_model needs a non-empty corpus of strings to train its tokenizer")
    tokenizer = train_tokenizer(texts, spec.vocab_size)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=spec.hidden_size, intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers, num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads, max_position_embeddings=spec.max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id,
                                               pad_token_id=config.pad_token_id)
    with output_folder(str(out_dir)) as out:  # a bucket URI: written locally, then uploaded
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
    return out_dir if is_uri(out_dir) else Path(out_dir)


def corpus_texts(path: str) -> list[str]:
    """For training a tokenizer, the `text` (else `prompt + output`) of a training corpus's rows."""
    import pyarrow as pa
    import pyarrow.dataset as pads

    from knowcoder_ray.train.dataset import _detect_format, corpus_root

    root = corpus_root(str(path))
    try:  # to_pylist decodes the strings: a file not UTF-8 fails there
        table = pads.dataset(root, format=_detect_format(root)).to_table()
        cols = set(table.column_names)
        if "text" in cols:
            texts = table.column("text").to_pylist()
        elif {"prompt", "output"} <= cols:
            texts = [(p or "") + (o or "") for p, o in zip(table.column("prompt").to_pylist(),
                                                            table.column("output").to_pylist())]
        else:
            raise ValueError(f"{path} has columns {sorted(cols)}; expected 'text' or 'prompt' and 'output'")
    except (pa.ArrowInvalid, UnicodeDecodeError) as e:  # an empty or malformed file, or one not UTF-8
        raise ValueError(f"{path} is not a readable Parquet or JSON-lines corpus ({str(e).splitlines()[0]})") from None
    return [t for t in texts if isinstance(t, str) and t]
