"""Model, optimizer and distribution for one training worker: DeepSpeed, full-parameter or LoRA. ZeRO stage 0
is plain data parallelism (the small CPU configs: 12% more CPU a step than a bare PyTorch AdamW loop, same
losses); stages 1-3 partition optimizer state, gradients and weights, with optional CPU offload."""
from __future__ import annotations

import math
import os
import socket

import torch

from knowcoder_ray.storage import local_copy
from knowcoder_ray.train.config import TrainConfig


def make_scheduler(optimizer, cfg: TrainConfig, total_steps: int):
    """Warmup (a share of the steps) then cosine, linear or constant."""
    warmup = int(round(cfg.warmup_ratio * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if cfg.lr_schedule == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total_steps - warmup)
        if cfg.lr_schedule == "linear":
            return max(0.0, 1.0 - progress)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def deepspeed_config(cfg: TrainConfig, on_gpu: bool) -> dict:
    ds = cfg.deepspeed
    zero: dict = {"stage": ds.stage, "overlap_comm": on_gpu, "contiguous_gradients": True}
    if ds.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": on_gpu}
    if ds.offload_params:
        zero["offload_param"] = {"device": "cpu", "pin_memory": on_gpu}
    if ds.stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    adam = {"lr": cfg.lr, "betas": [0.9, 0.95], "eps": 1e-8, "weight_decay": cfg.weight_decay}
    if not on_gpu:
        adam["torch_adam"] = True  # the fused and CPU Adam ops would be compiled first (+38 s here)
    conf = {"train_micro_batch_size_per_gpu": cfg.micro_batch_size, "gradient_accumulation_steps": cfg.grad_accum,
            "gradient_clipping": cfg.max_grad_norm, "optimizer": {"type": "AdamW", "params": adam},
            "zero_optimization": zero, "steps_per_print": 10**9, "wall_clock_breakdown": False}
    if on_gpu and cfg.bf16:
        conf["bf16"] = {"enabled": True}
    return conf


PACKED_SDPA = "knowcoder_packed_sdpa"


def packed_sdpa(module, query, key, value, attention_mask, scaling=None, dropout=0.0, position_ids=None, **kwargs):
    """sdpa run on each packed sample alone (a position id of 0 starts a sample): block-diagonal causal attention
    without the blocks off the diagonal nor a row-by-row mask (with them: packed 0.6x the padded tokens/s)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if position_ids is None or attention_mask is not None or query.shape[2] != key.shape[2]:  # cached decoding
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout,
                                      **kwargs)
    gqa, rows = query.shape[1] != key.shape[1], []
    starts = position_ids.expand(query.shape[0], -1) == 0  # a sample starts at 0 and at every later 0
    starts[:, 0] = True
    bounds = [torch.nonzero(row).flatten().tolist() + [len(row)] for row in starts]  # per row, before any kernel
    # split, not sliced: the backward of a split is one cat, a slice's zero-fills the whole tensor each time
    for q, k, v, at in zip(query.split(1), key.split(1), value.split(1), bounds):
        lengths = [b - a for a, b in zip(at, at[1:])]  # of the row's samples
        rows.append(torch.cat([torch.nn.functional.scaled_dot_product_attention(
            *qkv, dropout_p=dropout, is_causal=True, scale=scaling, enable_gqa=gqa)
            for qkv in zip(q.split(lengths, 2), k.split(lengths, 2), v.split(lengths, 2))], dim=2))
    return torch.cat(rows).transpose(1, 2).contiguous(), None


def load_model(cfg: TrainConfig, on_gpu: bool, ds_config: dict | None = None):
    """The HF causal LM of `cfg.model`, with LoRA adapters when `cfg.lora.enabled`. Under ZeRO-3 the
    weights load straight into partitions (HfDeepSpeedConfig must stay alive until deepspeed.initialize)."""
    from transformers import AutoModelForCausalLM

    keep = None
    if ds_config and ds_config["zero_optimization"]["stage"] == 3:
        from transformers.integrations import HfDeepSpeedConfig

        keep = HfDeepSpeedConfig(ds_config)
    attn = cfg.attn_implementation
    if attn == "sdpa":  # per-sample attention over packed rows; the same sdpa kernel, decoding unchanged
        from transformers import AttentionInterface

        AttentionInterface.register(PACKED_SDPA, packed_sdpa)
        attn = PACKED_SDPA
    # bf16 weights on GPUs (DeepSpeed keeps fp32 master weights for the update); fp32 on CPUs
    dtype = torch.bfloat16 if on_gpu and cfg.bf16 else torch.float32
    model = AutoModelForCausalLM.from_pretrained(local_copy(cfg.model), dtype=dtype, attn_implementation=attn)
    model.config.use_cache = False
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if cfg.lora.enabled:
            model.enable_input_require_grads()
    if cfg.lora.enabled:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(
            r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
            target_modules=cfg.lora.target_modules, task_type="CAUSAL_LM"))
    return model, keep


def loss_positions(labels: torch.Tensor) -> torch.Tensor:
    """Positions whose next token is in the loss (in any row): the only logits needed. For SFT, a tenth of a
    prompt-heavy row; vocabulary logits everywhere made a small model's step 1.2-2x slower."""
    return torch.nonzero((labels[:, 1:] != -100).any(dim=0)).flatten()


def forward_loss(model, batch: dict) -> torch.Tensor:
    """Mean next-token cross-entropy over the labelled tokens (what HF's `labels=` loss computes), with
    the LM head applied only at the positions that predict them, and the trailing padding left out."""
    # No attention mask and no cache: position ids that restart per sample give per-sample attention.
    labels = batch["labels"]
    keep = loss_positions(labels)
    # the padding after the last labelled token of every row changes nothing: leave it out of the pass
    end = int(keep[-1]) + 2 if len(keep) else labels.shape[1]
    logits = model(input_ids=batch["input_ids"][:, :end], position_ids=batch["position_ids"][:, :end],
                   logits_to_keep=keep, use_cache=False).logits
    return torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]),
                                             labels[:, keep + 1].reshape(-1), ignore_index=-100)


def micro_step(engine, batch: dict) -> float:
    """One micro-batch; DeepSpeed scales the backward by 1/grad_accum and steps only at the boundary."""
    loss = forward_loss(engine, batch)
    engine.backward(loss)
    engine.step()
    return float(loss.detach())


def full_state_dict(engine, rank: int) -> dict | None:
    """The whole model's weights on rank 0, None on the others (collective under ZeRO-3)."""
    if engine.zero_optimization_stage() == 3:
        return engine._zero3_consolidated_16bit_state_dict()
    return {k: v.detach().cpu() for k, v in engine.module.state_dict().items()} if rank == 0 else None


def build_engine(cfg: TrainConfig, total_steps: int, device: torch.device):
    """The model in a DeepSpeed engine for training on `device`."""
    import deepspeed

    on_gpu = device.type == "cuda"
    torch.manual_seed(cfg.seed)  # identical LoRA initialisation on every worker
    if not torch.distributed.is_initialized():
        # a gloo group of this process alone, for a single CPU worker Ray Train started without one
        # (run._trainer_class), with the launcher variables DeepSpeed reads
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        torch.distributed.init_process_group("gloo", rank=0, world_size=1)
    conf = deepspeed_config(cfg, on_gpu)
    model, keep = load_model(cfg, on_gpu, conf)
    engine, *_ = deepspeed.initialize(
        model=model, model_parameters=[p for p in model.parameters() if p.requires_grad], config=conf,
        lr_scheduler=lambda opt: make_scheduler(opt, cfg, total_steps))
    engine.hf_ds_config = keep  # transformers' ZeRO-3 switch, kept alive with the engine
    return engine


def export_model(module, state_dict: dict, out_dir: str, base_model: str) -> None:
    """Write an HF model folder or (LoRA) a PEFT adapter folder with the tokenizer, from a full state dict."""
    from transformers import AutoTokenizer

    for peft_config in getattr(module, "peft_config", {}).values():
        peft_config.base_model_name_or_path = base_model  # the path or URI given, not a local cache
    module.save_pretrained(out_dir, state_dict=state_dict)
    AutoTokenizer.from_pretrained(local_copy(base_model)).save_pretrained(out_dir)
