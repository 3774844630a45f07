"""The transformers engine on a real tiny Llama: batched generation with schema-prefix KV reuse gives
exactly the texts of plain one-prompt-at-a-time generation (the official loop)."""
import pytest

from knowcoder_ray.codec.render import render_prompt
from knowcoder_ray.data.benchmarks import load_benchmark
from knowcoder_ray.infer.engine import (EngineConfig, Prompt, RepeatedItemStop, TransformersEngine, cut_at_stop,
                                        drop_repeats, finish, load_engine, truncate_ids)
from engine_helpers import cached_engine_test_model
from knowcoder_ray.infer.sharding import make_shard


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, data_dir):
    return cached_engine_test_model(tmp_path_factory.getbasetemp(), data_dir)


@pytest.fixture(scope="module")
def prompts(data_dir):
    """Prompts of three schema shards (NER, RE, EAE with confirmed triggers), interleaved."""
    conll, conll_lib = load_benchmark("conll04", data_dir)
    wiki, wiki_lib = load_benchmark("wikievents", data_dir)
    ner = make_shard("ner", conll_lib.of_kind("entity"))
    re_ = make_shard("re", conll_lib.of_kind("relation"), conll_lib)
    eae = make_shard("eae", [t for t in wiki_lib.of_kind("event") if t.roles][:6], wiki_lib)
    out = []
    for i in range(4):
        out.append(Prompt(ner.prompt(conll[i].text), len(ner.head)))
        out.append(Prompt(re_.prompt(conll[i + 6].text), len(re_.head)))
        out.append(Prompt(eae.prompt(wiki[i].text, [("Attack", "bombing")]), len(eae.head)))
    # a shard prompt is exactly the codec's prompt
    assert out[1].text == render_prompt("re", conll_lib.of_kind("relation"), conll[6].text, library=conll_lib)
    return out


def _engine(model_dir, **kw):
    return TransformersEngine(model_dir, EngineConfig(max_new_tokens=16, **kw))


def test_prefix_reuse_gives_exactly_plain_texts(model_dir, prompts):
    plain = _engine(model_dir, batch_size=1, prefix_reuse=False).generate(prompts)
    fast_engine = _engine(model_dir, batch_size=3)
    fast = fast_engine.generate(prompts)
    assert fast == plain
    # the check means something: the untrained model still says different things to different prompts
    assert len(set(plain)) >= len(prompts) // 2
    # one prefix computation per shard; the other batches of that shard reuse it
    assert fast_engine.stats["prefix_computed"] == 3
    assert fast_engine.stats["prefix_reused"] == 3  # 4 prompts per shard, batches of 3: 2 batches each
    # a second call reuses the cached prefixes only
    assert fast_engine.generate(prompts[:3]) == plain[:3]
    assert fast_engine.stats["prefix_computed"] == 3


def test_batched_left_padding_and_official_cut_keep_texts(model_dir, prompts):
    """Plain batching (left padding, no prefix cache) and prompts cut to head + tail tokens."""
    cut = dict(max_prompt_tokens=300, keep_head=100, keep_tail=150)
    plain = _engine(model_dir, batch_size=1, prefix_reuse=False, **cut)
    assert len(plain.encode(prompts[0].text)) == 250
    one_by_one = plain.generate(prompts[:6])
    assert _engine(model_dir, batch_size=4, prefix_reuse=False, **cut).generate(prompts[:6]) == one_by_one
    # the prefix is longer than the kept head: only the common part is cached, texts are unchanged
    assert _engine(model_dir, batch_size=4, **cut).generate(prompts[:6]) == one_by_one


def test_plain_strings_and_engine_factory(model_dir, prompts):
    engine = load_engine("transformers", model_dir, EngineConfig(max_new_tokens=8))
    texts = engine.generate([p.text for p in prompts[:2]])
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
    with pytest.raises(ValueError, match="unknown engine"):
        load_engine("tgi", model_dir)
    with pytest.raises(ValueError, match="unknown setting 'max_new_token'"):
        EngineConfig.model_validate({"max_new_token": 3})


def test_peft_adapter_folder_loads_merged(model_dir, prompts, tmp_path):
    """A LoRA adapter folder is merged into its base on load: same texts as the merged model."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)  # a non-zero update, so the adapter changes outputs
    model.save_pretrained(tmp_path / "adapter")
    model.merge_and_unload().save_pretrained(tmp_path / "merged")
    (tmp_path / "adapter" / "adapter_config.json").write_text(
        (tmp_path / "adapter" / "adapter_config.json").read_text().replace(
            '"base_model_name_or_path": null', f'"base_model_name_or_path": "{model_dir}"'))
    import shutil
    for f in model_dir.glob("tokenizer*"):
        shutil.copy(f, tmp_path / "merged")
    via_adapter = _engine(tmp_path / "adapter", batch_size=3).generate(prompts[:3])
    assert via_adapter == _engine(tmp_path / "merged", batch_size=1, prefix_reuse=False).generate(prompts[:3])
    assert via_adapter != _engine(model_dir, batch_size=3).generate(prompts[:3])


def test_truncate_and_stop():
    ids = list(range(5000))
    assert truncate_ids(ids) == list(range(1500)) + list(range(3000, 5000))
    assert truncate_ids(ids[:3500]) == ids[:3500]
    assert cut_at_stop('results = []\n"""\nclass X') == "results = []\n"
    assert cut_at_stop("results = [") == "results = ["
    assert cut_at_stop("results = [Per\ufffd") == "results = [Per"  # cut inside a multi-byte character


LOOP = 'results = [\n\tLocation("America"),\n\tOther("1980"),\n\tLocation("America"),\n\tOther("1980"),\n\tLoc'


def test_repeated_item_ends_the_list():
    assert drop_repeats(LOOP) == 'results = [\n\tLocation("America"),\n\tOther("1980")\n]'
    clean = 'results = [\n\tPerson("Ann"),\n\tPerson("Bob")\n]'
    assert drop_repeats(clean) == clean
    assert drop_repeats("Entity:\nEntity:\nEnt") == "Entity:"  # no list opened: only cut
    # an item still being written is not a repeat yet
    assert drop_repeats('results = [\n\tPerson("Ann"),\n\tPerson("Ann"') == 'results = [\n\tPerson("Ann"),\n\tPerson("Ann"'


def test_stop_at_repeat_off_keeps_repeats_as_the_released_evaluation_does(model_dir):
    """The released evaluation generates to the stop quote or the token limit and its scorer counts every
    repeated item; `stop_at_repeat: false` returns such outputs whole (cut at the stop quote only) on
    every engine path (`finish`: transformers, vLLM, the `ray.data.llm` processor, Serve's LLM server; the
    processor and the server cut at the stop quote only whatever the setting, before)."""
    off = EngineConfig(stop_at_repeat=False)
    assert finish(LOOP + '"""\nclass', off) == LOOP
    assert finish(LOOP + '\n"""', EngineConfig()) == drop_repeats(LOOP)
    assert RepeatedItemStop not in {type(c) for c in TransformersEngine(model_dir, off).stopping}
    assert RepeatedItemStop in {type(c) for c in _engine(model_dir).stopping}


def test_repeat_stop_criterion_per_row(model_dir):
    import torch
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    prompt = tok("sentence = 1\n")["input_ids"]
    looping = tok(LOOP.rsplit("\n", 1)[0] + "\n", add_special_tokens=False)["input_ids"]
    fine = tok('results = [\n\tLocation("America"),\n\tOther("1980"),\n', add_special_tokens=False)["input_ids"]
    n = max(len(looping), len(fine))
    rows = [prompt + [tok.pad_token_id] * (n - len(x)) + x for x in (looping, fine)]
    stop = RepeatedItemStop(tok, start=len(prompt))
    assert stop(torch.tensor(rows), None).tolist() == [True, False]
