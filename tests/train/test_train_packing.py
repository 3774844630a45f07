"""Packing, prompt masking, configs and the tiny model factory (no Ray): packed logits must equal
per-sample logits, and the loss must see exactly the tokens it should."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from knowcoder_ray.train.config import CONFIG_DIR, ConfigError, load_config
from knowcoder_ray.train.packing import IGNORE, bins_best_fit, pack, pair_sample, text_samples
from knowcoder_ray.train.tiny import make_tiny_model
from corpora_helpers import conll04_pairs


@pytest.fixture(scope="module")
def pairs(data_dir):
    return conll04_pairs(data_dir)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, pairs):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = make_tiny_model(tmp_path_factory.mktemp("tiny"), [p + o for p, o in pairs], seed=0)
    return AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path).eval()


def test_tiny_model_folder_is_a_complete_hf_model(tiny, pairs):
    tok, model = tiny
    assert model.config.model_type == "llama" and model.config.vocab_size == len(tok) <= 1024
    text = pairs[0][0] + pairs[0][1]
    ids = tok(text)["input_ids"]
    assert ids[0] == tok.bos_token_id and tok.unk_token_id not in ids
    assert tok.decode(ids, skip_special_tokens=True) == text  # tabs, newlines and quotes survive


def test_best_fit_bins_respect_capacity_and_place_every_sample():
    lengths = [5, 9, 3, 7, 1, 10, 2, 6]
    bins = bins_best_fit(lengths, 10)
    assert sorted(i for b in bins for i in b) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in b) <= 10 for b in bins)
    assert len(bins) == 5  # total 43 needs at least 5 bins of 10
    with pytest.raises(ValueError, match="exceeds"):
        bins_best_fit([11], 10)


def test_pack_layout_labels_and_positions():
    from knowcoder_ray.train.packing import Sample

    samples = [Sample((1, 10, 11, 2)), Sample((1, 20, 21, 22, 2), n_masked=3)]
    rows = pack(samples, 12, pad_id=0)
    assert rows["input_ids"].shape == (1, 12) and rows["n_samples"].tolist() == [2]
    assert rows["n_tokens"].tolist() == [9]
    ids, labels, pos = rows["input_ids"][0], rows["labels"][0], rows["position_ids"][0]
    # best fit decreasing puts the longer sample first; positions restart per sample and at the padding
    assert ids.tolist() == [1, 20, 21, 22, 2, 1, 10, 11, 2, 0, 0, 0]
    assert pos.tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3, 0, 1, 2]
    # the first token of every sample, masked prompt tokens and padding stay out of the loss
    assert labels.tolist() == [IGNORE, IGNORE, IGNORE, 22, 2, IGNORE, 10, 11, 2, IGNORE, IGNORE, IGNORE]
    padded = pack(samples, 12, pad_id=0, packing=False)
    assert padded["input_ids"].shape == (2, 12) and padded["n_tokens"].tolist() == [4, 5]


def test_sft_sample_masks_exactly_the_prompt(tiny, pairs):
    tok, _ = tiny
    prompt, output = pairs[3]
    s = pair_sample(tok, prompt, output, 4096)
    assert s.ids[-1] == tok.eos_token_id and not s.truncated
    assert tok.decode(s.ids[:s.n_masked], skip_special_tokens=True) == prompt
    assert tok.decode(s.ids[s.n_masked:], skip_special_tokens=True) == output
    cut = pair_sample(tok, prompt, output, s.n_masked + 3)
    assert cut.truncated and len(cut.ids) == s.n_masked + 3
    with pytest.raises(ValueError, match="no room for the output"):
        pair_sample(tok, prompt, output, s.n_masked)


def test_long_text_is_chunked_not_dropped(tiny, pairs):
    tok, _ = tiny
    text = pairs[0][0]
    n = len(tok(text)["input_ids"]) + 1
    chunks = text_samples(tok, text, 64)
    assert [len(c.ids) for c in chunks[:-1]] == [64] * (len(chunks) - 1) and sum(len(c.ids) for c in chunks) == n


def test_packed_logits_equal_per_sample_logits(tiny, pairs):
    tok, model = tiny
    samples = [pair_sample(tok, p, o, 1024) for p, o in pairs[:12]]
    rows = pack(samples, 1024, tok.pad_token_id)
    assert rows["n_samples"].max() >= 2
    ids = torch.tensor(rows["input_ids"], dtype=torch.long)
    pos = torch.tensor(rows["position_ids"], dtype=torch.long)
    with torch.no_grad():
        packed = model(input_ids=ids, position_ids=pos, use_cache=False).logits
        # control: the same rows with one running position sequence let samples attend to each other
        leaky = model(input_ids=ids, position_ids=torch.arange(1024).expand_as(ids), use_cache=False).logits
        worst, leak = 0.0, 0.0
        for r in range(len(ids)):
            starts = np.flatnonzero(rows["position_ids"][r] == 0)
            for a, b in zip(starts, list(starts[1:]) + [1024]):
                if a >= rows["n_tokens"][r]:
                    break  # the padding segment
                alone = model(input_ids=ids[r:r + 1, a:b]).logits[0]
                worst = max(worst, (packed[r, a:b] - alone).abs().max().item())
                leak = max(leak, (leaky[r, a:b] - alone).abs().max().item())
    assert worst < 1e-4, f"packed logits differ from per-sample logits by {worst}"
    assert leak > 1e-2  # the check can fail: without restarting positions the samples do mix


def test_config_loading_overrides_and_errors(tmp_path):
    cfg = load_config(CONFIG_DIR / "tiny_sft.yaml", ["lr=1e-4", "data.seq_len=512"])
    assert cfg.phase == "sft" and cfg.lr == 1e-4 and cfg.data.seq_len == 512
    assert (cfg.lora.enabled, cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout) == (True, 32, 64, 0.1)
    big = load_config(CONFIG_DIR / "llama7b_pretrain.yaml")
    assert big.use_gpu and big.bf16 and big.deepspeed.stage == 3 and big.num_workers == 8
    with pytest.raises(ConfigError, match="data: unknown setting 'seqlen' \\(known: path,"):
        load_config(CONFIG_DIR / "tiny_sft.yaml", ["data.seqlen=512"])
    with pytest.raises(ConfigError, match="lr: Input should be a valid number"):
        load_config(CONFIG_DIR / "tiny_sft.yaml", ["lr=fast"])
    with pytest.raises(ConfigError, match="output_dir: is blank: name a path or URI"):
        load_config("tiny_sft", {"output_dir": ""})  # a packaged name, dotted overrides as a mapping
    assert load_config("tiny_sft", ["lora.enabled=false"]).lora.enabled is False  # sft's default, overridden
    with pytest.raises(ConfigError, match="not 'pretrain'"):
        load_config(CONFIG_DIR / "tiny_sft.yaml", phase="pretrain")
    # one engine: plain data parallelism is DeepSpeed's stage 0, which has no optimizer state to offload
    assert load_config("small_sft").deepspeed.stage == 0
    with pytest.raises(ConfigError, match="deepspeed: offload_optimizer needs ZeRO stage 1, 2 or 3"):
        load_config("small_sft", ["deepspeed.offload_optimizer=true"])


def test_model_tiny_command_trains_the_tokenizer_on_a_corpus_file(tmp_path, pairs):
    import json

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from knowcoder_ray.cli import main

    corpus = tmp_path / "following.jsonl"
    corpus.write_text("".join(json.dumps({"prompt": p, "output": o}) + "\n" for p, o in pairs[:50]))
    assert main(["model", "tiny", "--out", str(tmp_path / "m"), "--corpus", str(corpus), "--vocab-size", "512"]) == 0
    assert len(AutoTokenizer.from_pretrained(tmp_path / "m")) == 512
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "m").config.num_hidden_layers == 2


def test_loss_on_output_positions_only_equals_full_loss(tiny, pairs):
    """The training loss computes logits only where a labelled token is predicted; it must equal the
    loss of the full logits (HF's `labels=` loss) and get the same gradients."""
    from knowcoder_ray.train.engine import forward_loss, loss_positions

    tok, model = tiny
    rows = pack([pair_sample(tok, p, o, 1024) for p, o in pairs[:12]], 1024, tok.pad_token_id)
    batch = {k: torch.tensor(rows[k][:2], dtype=torch.long) for k in ("input_ids", "labels", "position_ids")}
    keep = loss_positions(batch["labels"])
    assert 0 < len(keep) < 1024 // 3  # SFT rows: mostly prompt, so few positions are needed
    assert int(keep[-1]) + 2 < 1024  # the rows end in padding, which the pass leaves out
    model.zero_grad()
    fast = forward_loss(model, batch)
    fast.backward()
    g_fast = model.lm_head.weight.grad.clone()
    model.zero_grad()
    full = model(**batch, use_cache=False).loss
    full.backward()
    assert abs(float(fast) - float(full)) < 1e-5
    assert torch.allclose(g_fast, model.lm_head.weight.grad, atol=1e-6)
    model.zero_grad()


def test_per_sample_attention_equals_the_masked_sdpa(tiny, pairs):
    """Training runs sdpa on each packed sample alone (engine.packed_sdpa); its logits, loss and gradients
    must equal those of transformers' sdpa with the block-diagonal mask it builds from the position ids."""
    from knowcoder_ray.train.config import load_config
    from knowcoder_ray.train.engine import forward_loss, load_model

    tok, masked = tiny
    cfg = load_config(None, [f"model={masked.name_or_path}", "data.path=x", "output_dir=x", "storage_path=x",
                             "deepspeed.stage=0"], phase="pretrain")
    model, _ = load_model(cfg, on_gpu=False)
    assert model.config._attn_implementation != masked.config._attn_implementation == "sdpa"
    rows = pack([pair_sample(tok, p, o, 1024) for p, o in pairs[:12]], 1024, tok.pad_token_id)
    batch = {k: torch.tensor(rows[k][:2], dtype=torch.long) for k in ("input_ids", "labels", "position_ids")}
    assert rows["n_samples"][:2].min() >= 2
    grads = []
    for m in (model, masked):
        m.zero_grad()
        logits = m(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
        loss = forward_loss(m, batch)
        loss.backward()
        grads.append((logits.detach(), float(loss), m.model.layers[0].self_attn.q_proj.weight.grad.clone()))
        m.zero_grad()
    (l1, loss1, g1), (l2, loss2, g2) = grads
    assert (l1 - l2).abs().max() < 1e-4 and abs(loss1 - loss2) < 1e-5
    assert torch.allclose(g1, g2, atol=1e-6)
