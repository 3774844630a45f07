"""Training runs on the tiny model with 2 Ray Train workers (or 1, the plain trainer) and a real corpus
built from CoNLL04: DeepSpeed ZeRO-3 pretraining that survives an injected worker failure, and LoRA SFT
through the CLI with a merged model that gives the same logits as base plus adapter."""
from __future__ import annotations

import json

import pytest
import torch

from knowcoder_ray.train.config import CONFIG_DIR, load_config
from corpora_helpers import TRAIN_SEQ_LEN as SEQ_LEN

def _steps(log_file) -> list[dict]:
    return [json.loads(line) for line in open(log_file)]


def test_pretrain_zero3_resumes_after_worker_failure_and_exports(ray_cluster, corpus, fail_once_at):
    from transformers import AutoModelForCausalLM

    from knowcoder_ray.train.run import train

    root, model = corpus
    log_file = root / "pretrain.jsonl"
    cfg = load_config(CONFIG_DIR / "tiny_pretrain.yaml", [
        f"model={model}", f"data.path={root / 'understanding.parquet'}", f"data.seq_len={SEQ_LEN}",
        f"output_dir={root / 'pretrained'}", f"storage_path={root / 'ckpt'}", "run_name=pretrain-test",
        "max_steps=8", "save_every=3", "max_failures=1", f"log_file={log_file}"])
    result = train(cfg, step_hooks=[fail_once_at(5)])

    steps = _steps(log_file)
    first = [s for s in steps if s["resumed_at"] is None]
    second = [s for s in steps if s["resumed_at"] is not None]
    # attempt 1 failed at step 5; attempt 2 restored the step-3 checkpoint and went on to step 8
    assert [s["step"] for s in first] == [1, 2, 3, 4, 5]
    assert [s["step"] for s in second] == [4, 5, 6, 7, 8] and second[0]["resumed_at"] == 3
    for a, b in zip(first[3:], second[:2]):  # the redone steps saw the same data, weights and lr
        assert (a["fingerprint"], a["tokens"], a["lr"]) == (b["fingerprint"], b["tokens"], b["lr"])
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    assert len({s["fingerprint"] for s in first + second[2:]}) == 8  # no batch seen twice
    assert result.metrics["step"] == 8 and result.metrics["tokens"] == second[-1]["tokens"]
    assert second[-1]["loss"] < first[0]["loss"] - 0.5, "loss did not fall"
    assert result.data["samples"] >= 576 and result.data["rejected"] == 0 and result.data["fill"] > 0.7

    # the exported folder is a plain HF model, equal to the fp32 weights gathered from the ZeRO-3 shards
    exported = AutoModelForCausalLM.from_pretrained(root / "pretrained")
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    shards = get_fp32_state_dict_from_zero_checkpoint(result.checkpoint_path, tag="deepspeed")
    for name, tensor in exported.state_dict().items():
        assert torch.equal(tensor, shards[name]), name
    initial = AutoModelForCausalLM.from_pretrained(model)
    assert not torch.equal(initial.model.embed_tokens.weight, exported.model.embed_tokens.weight)


def test_sft_lora_through_cli_then_merge(ray_cluster, corpus):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from knowcoder_ray.cli import main

    root, model = corpus
    adapter, merged, log_file = root / "adapter", root / "merged", root / "sft.jsonl"
    assert main(["train", "sft", "--config", "tiny_sft", "--set", f"model={model}",
                 "--set", f"data.path={root / 'following.jsonl'}", "--set", f"data.seq_len={SEQ_LEN}",
                 "--set", f"output_dir={adapter}", "--set", f"storage_path={root / 'ckpt'}",
                 "--set", "run_name=sft-test", "--set", "max_steps=4", "--set", "lr=1e-2",
                 "--set", f"log_file={log_file}"]) == 0
    summary = json.loads((adapter / "training_summary.json").read_text())
    assert summary["data"]["rejected"] == 2 and summary["data"]["samples"] == 288
    assert summary["data"]["reasons"] == {"'prompt' is missing or not a non-empty string": 1,
                                          "prompt leaves no room for the output": 1}
    assert [s["step"] for s in _steps(log_file)] == [1, 2, 3, 4]
    conf = json.loads((adapter / "adapter_config.json").read_text())
    assert (conf["r"], conf["lora_alpha"], conf["lora_dropout"]) == (32, 64, 0.1)
    assert conf["base_model_name_or_path"] == str(model)
    targets = {name.rsplit(".", 1)[-1] for name in conf["target_modules"]}
    assert targets == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}  # not lm_head

    assert main(["merge", "--adapter", str(adapter), "--out", str(merged)]) == 0
    ids = torch.randint(0, 1000, (2, 64))
    with torch.no_grad():
        base = AutoModelForCausalLM.from_pretrained(model).eval()
        plain = base(ids).logits
        with_adapter = PeftModel.from_pretrained(base, adapter).eval()(ids).logits
        folded = AutoModelForCausalLM.from_pretrained(merged).eval()(ids).logits
    assert (with_adapter - plain).abs().max() > 1e-3  # the adapter learned something
    assert torch.allclose(folded, with_adapter, atol=1e-5)


@pytest.mark.parametrize("workers", [2, 1], ids=["two-workers", "one-worker-own-process-group"])
def test_sft_at_stage0_resumes(ray_cluster, corpus, fail_once_at, workers):
    from knowcoder_ray.train.run import _trainer_class, train

    root, model = corpus
    log_file = root / f"stage0-{workers}.jsonl"
    cfg = load_config(CONFIG_DIR / "tiny_sft.yaml", [
        f"model={model}", f"data.path={root / 'following.jsonl'}", f"data.seq_len={SEQ_LEN}",
        f"output_dir={root / f'adapter-stage0-{workers}'}", f"storage_path={root / 'ckpt'}",
        f"run_name=stage0-test-{workers}",
        "deepspeed.stage=0", "max_steps=5", "save_every=2", "max_failures=1", f"num_workers={workers}",
        f"log_file={log_file}"])
    # one CPU worker runs under the plain trainer with a process group of its own (see _trainer_class), and
    # restarts the same way
    assert _trainer_class(cfg)[0].__name__ == ("TorchTrainer" if workers > 1 else "DataParallelTrainer")
    result = train(cfg, step_hooks=[fail_once_at(3)])
    steps = _steps(log_file)
    assert [(s["step"], s["resumed_at"]) for s in steps] == [(1, None), (2, None), (3, None), (3, 2), (4, 2), (5, 2)]
    redone = steps[2], steps[3]  # step 3 before the failure and again after it: same data, same dropout
    assert redone[0]["fingerprint"] == redone[1]["fingerprint"]
    assert redone[0]["loss"] == pytest.approx(redone[1]["loss"], rel=1e-5)
    assert result.metrics["step"] == 5 and (root / f"adapter-stage0-{workers}" / "adapter_model.safetensors").exists()
