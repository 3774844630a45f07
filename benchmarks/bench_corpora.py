"""Corpus pipelines: records/s per core of the Ray Data pipeline against a plain single-process loop
doing the same transformation, at 1 and 2 CPUs; peak memory at 1x and 10x input; hours for KnowCoder's
1.5B-token understanding corpus per 100 cores.

Inputs are written in the true source layouts from the real sentences and annotations of ../shared/data:
KELM lines (triples + "instance of" triples + gen_sentence) from CoNLL04 and NYT for the understanding
corpus, InstructIE lines (NYT, CoNLL04) and a UniversalNER conversation array (CoNLL-2003) for the
following corpus; 10x repeats them. Every measurement runs in a fresh process. The plain loop reads
each file whole, transforms record by record and writes one Parquet file (what a one-off script does;
it runs at 1x only: its records/s hardly change with size, its memory grows with the input); the
pipeline streams shards through Ray Data actors. Timings on this shared 2-core machine are noisy.

    python benchmarks/bench_corpora.py [--data-dir ../shared/data] [--scale 10] [--block-mb 1]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.pop("RAY_ADDRESS", None)
KNOWCODER_TOKENS = {"understanding": 1.5e9, "following": 1.17e9}  # DESIGN.md section 1


# ---- inputs in the source layouts --------------------------------------------------------------------

def make_inputs(data_dir: str, folder: Path, repeat: int) -> dict[str, dict[str, list[str]]]:
    from knowcoder_ray.data.benchmarks import load_benchmark

    rel_records = [r for split in ("train", "dev", "test") for r in load_benchmark("conll04", data_dir, split)[0]]
    rel_records += load_benchmark("nyt", data_dir, "test")[0]
    ner_records = load_benchmark("conll2003", data_dir, "test")[0]
    label = {"Person": "person", "Organization": "organisation", "Location": "location", "Other": "misc"}

    def words(name: str) -> str:  # class name -> the label text KELM/InstructIE would carry
        return "".join(" " + c.lower() if c.isupper() else c for c in name).strip()

    kelm, ie = [], []
    for r in rel_records:
        typed = {e.text: label.get(e.type) for e in r.entities if label.get(e.type)}
        triples = [[x.head.text, words(x.type), x.tail.text] for x in r.relations]
        triples += [[t, "instance of", lab] for t, lab in typed.items()]
        if triples:
            kelm.append({"triples": triples, "serialized_triples": " ".join(" ".join(t) for t in triples),
                         "gen_sentence": r.text})
        ie.append({"id": r.id, "cate": "Person", "text": r.text,
                   "relation": [{"head": x.head.text, "head_type": label.get(x.head.type, "entity"),
                                 "relation": words(x.type), "tail": x.tail.text,
                                 "tail_type": label.get(x.tail.type, "entity")} for x in r.relations]})
    uner = []
    for r in ner_records:
        turns = [{"from": "human", "value": f"Text: {r.text}"}, {"from": "gpt", "value": "I've read this text."}]
        for t in sorted({e.type for e in r.entities}):
            turns += [{"from": "human", "value": f"What describes {label.get(t, t.lower())} in the text?"},
                      {"from": "gpt", "value": json.dumps([e.text for e in r.entities if e.type == t])}]
        uner.append({"conversations": turns, "id": r.id})
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"kelm": folder / "kelm_generated_corpus.jsonl", "instructie": folder / "instructie_train_en.json",
             "universalner": folder / "pile_ner_type.json"}
    with open(paths["kelm"], "w") as f:
        for _ in range(repeat):
            f.writelines(json.dumps(d) + "\n" for d in kelm)
    with open(paths["instructie"], "w") as f:
        for _ in range(repeat):
            f.writelines(json.dumps(d) + "\n" for d in ie)
    paths["universalner"].write_text(json.dumps(uner * repeat))
    return {"understanding": {"kelm": [str(paths["kelm"])]},
            "following": {"instructie": [str(paths["instructie"])], "universalner": [str(paths["universalner"])]}}


def make_tokenizer(data_dir: str, folder: Path) -> str:
    """A byte-level BPE tokenizer (16k merges) trained on the benchmark sentences: the cost of exact
    token counting with a Hugging Face fast tokenizer, as a LLaMA tokenizer folder would have it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from knowcoder_ray.data.benchmarks import load_benchmark

    texts = [r.text for name in ("conll2003", "nyt") for r in load_benchmark(name, data_dir, "test")[0]]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer, tok.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=16_000, special_tokens=["<s>", "</s>"]))
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>").save_pretrained(folder)
    return str(folder)


# ---- one measurement (runs in a child process) -------------------------------------------------------

def build(corpus: str, data_dir: str, inputs: dict, block_bytes: int):
    from knowcoder_ray.data import following, understanding
    from knowcoder_ray.data.sources import benchmark_library

    library = benchmark_library(data_dir)
    if corpus == "understanding":
        return (understanding.UnderstandingTransform(library),
                understanding.plan(library, inputs["kelm"], definitions=False, block_bytes=block_bytes))
    return (following.FollowingTransform(library, following.Sampling(seed=0, shard_size=8, distractors=4)),
            following.plan(**inputs, block_bytes=block_bytes))


def plain_loop(transform, specs, out: Path) -> dict:
    """The same transformation as a one-off script: each file read whole, one output file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from knowcoder_ray.data.pipeline import MALFORMED, Item, ShardSpec
    from knowcoder_ray.tokens import TokenCounter

    counter, rows, records, bad = TokenCounter(), [], 0, 0
    for path in dict.fromkeys(s.path for s in specs):
        spec = next(s for s in specs if s.path == path)
        text = Path(path).read_text()
        payloads = json.loads(text) if spec.kind == "json_array" else text.splitlines()
        whole = ShardSpec(spec.shard, spec.source, spec.kind, path)
        for i, p in enumerate(payloads):
            records += 1
            try:
                rows += [row for _, row in transform.rows(whole, Item(f"{path}:{i}", p))]
            except MALFORMED:
                bad += 1
    for row, n in zip(rows, counter([transform.token_text(r) for r in rows])):
        row["n_tokens"] = n
    pq.write_table(pa.Table.from_pylist(rows, schema=transform.schema), out / "corpus.parquet")
    return {"records": records, "rows": len(rows), "quarantined": bad, "n_tokens": sum(r["n_tokens"] for r in rows)}


class TreeMemory:
    """Peak resident memory of this process and all its descendants (Ray's processes included), and
    the peak of the single largest Ray Data worker, sampled every 50 ms; and the CPU seconds each kind
    of process used since `mark()` (where a 2-CPU run's cores went)."""

    KINDS = (("MapBatches", "shard actors"), ("raylet", "raylet"), ("gcs_server", "GCS"), ("agent", "Ray agents"),
             ("ray::", "other Ray workers"))

    def __init__(self) -> None:
        import psutil

        self.me, self.total, self.worker, self._stop = psutil.Process(), 0, 0, threading.Event()
        self.cpu: dict[int, tuple[str, float]] = {}  # pid -> (kind, CPU seconds so far)
        self.base: dict[int, float] = {}
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _kind(self, p) -> str:
        if p.pid == self.me.pid:
            return "driver"
        cmd = " ".join(p.cmdline())
        return next((kind for key, kind in self.KINDS if key in cmd), "other")

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            total = 0
            for p in [self.me, *self.me.children(recursive=True)]:
                try:
                    rss = p.memory_info().rss
                    total += rss
                    kind = self._kind(p)
                    if kind == "shard actors":
                        self.worker = max(self.worker, rss)
                    t = p.cpu_times()
                    self.cpu[p.pid] = (kind, t.user + t.system)
                except psutil.Error:
                    pass
            self.total = max(self.total, total)
            time.sleep(0.05)

    def mark(self) -> None:
        self.base = {pid: c for pid, (_, c) in self.cpu.items()}

    def cpu_by_kind(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for pid, (kind, c) in self.cpu.items():
            out[kind] = round(out.get(kind, 0.0) + c - self.base.get(pid, 0.0), 2)
        return out

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def child(args: argparse.Namespace) -> None:
    inputs = json.loads(args.inputs)
    transform, specs = build(args.corpus, args.data_dir, inputs, int(args.block_mb * (1 << 20)))
    out = Path(tempfile.mkdtemp(prefix="bench_corpora_"))
    if args.engine == "loop":
        t0 = time.perf_counter()
        m = plain_loop(transform, specs, out)
        wall = time.perf_counter() - t0
        peak = {"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    else:
        import ray
        import ray.data

        from knowcoder_ray.data import pipeline

        mem = TreeMemory()
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        first: list[float] = []

        def progress(marker: dict, i: int, n: int) -> None:  # when the first shard's work began
            if not first:
                first.append(time.perf_counter() - marker["seconds"])
        time.sleep(0.2)  # a sample of every process's CPU so far
        mem.mark()
        t0 = time.perf_counter()
        m = pipeline.run(transform, specs, str(out / "corpus"), workers=args.cpus, progress=progress,
                         tokenizer=args.tokenizer)
        wall = time.perf_counter() - t0
        time.sleep(0.1)
        cpu = mem.cpu_by_kind()
        ray.shutdown()
        mem.stop()
        peak = {"peak_mb": mem.total / 2**20, "worker_peak_mb": mem.worker / 2**20, "startup": first[0] - t0,
                "cpu": cpu}
    print(json.dumps({"wall": wall, "records": m["records"], "rows": m["rows"], "n_tokens": m["n_tokens"],
                      "quarantined": m["quarantined"], "shards": len(specs), **peak}))


def measure(corpus: str, engine: str, cpus: int, inputs: dict, args: argparse.Namespace,
            tokenizer: str | None = None) -> dict:
    cmd = [sys.executable, __file__, "--child", "--corpus", corpus, "--engine", engine, "--cpus", str(cpus),
           "--inputs", json.dumps(inputs), "--data-dir", args.data_dir, "--block-mb", str(args.block_mb),
           *(["--tokenizer", tokenizer] if tokenizer else [])]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if res.returncode:
        raise SystemExit(f"{corpus}/{engine}/{cpus} failed:\n{res.stderr[-3000:]}")
    r = json.loads(res.stdout.strip().splitlines()[-1])
    busy = r["wall"] - r.get("startup", 0.0)  # without the fixed start of the actors (amortized at scale)
    r["rec_s_core"] = r["records"] / r["wall"] / cpus
    r["rec_s_core_steady"] = r["records"] / busy / cpus
    r["tok_s_core_steady"] = r["n_tokens"] / busy / cpus
    return r


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=os.environ.get("KNOWCODER_DATA_DIR", str(ROOT.parent / "shared" / "data")))
    p.add_argument("--base", type=int, default=4, help="the 1x input repeats the real data this many times")
    p.add_argument("--scale", type=int, default=10, help="the larger input is this many times the 1x one")
    p.add_argument("--block-mb", type=float, default=2.0, help="input megabytes per shard")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--corpus", help=argparse.SUPPRESS)
    p.add_argument("--engine", help=argparse.SUPPRESS)
    p.add_argument("--cpus", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--inputs", help=argparse.SUPPRESS)
    p.add_argument("--tokenizer", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return
    tmp = Path(tempfile.mkdtemp(prefix="bench_corpora_inputs_"))
    base = make_inputs(args.data_dir, tmp / "x1", args.base)
    big = make_inputs(args.data_dir, tmp / f"x{args.scale}", args.base * args.scale)
    tokenizer = make_tokenizer(args.data_dir, tmp / "bpe_tokenizer")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start (shared with other "
          f"work: timings are noisy); shards of {args.block_mb} MB input")
    summary = {}
    for corpus in ("understanding", "following"):
        loop1 = measure(corpus, "loop", 1, base[corpus], args)
        ray1 = measure(corpus, "ray", 1, base[corpus], args)
        ray2 = measure(corpus, "ray", 2, base[corpus], args)
        ray10_1 = measure(corpus, "ray", 1, big[corpus], args)
        ray10 = measure(corpus, "ray", 2, big[corpus], args)
        raytok = measure(corpus, "ray", 2, base[corpus], args, tokenizer)
        assert ray1["rows"] == ray2["rows"] == loop1["rows"] and ray10["rows"] == ray10_1["rows"] == args.scale * loop1["rows"]
        print(f"\n== {corpus} corpus: {loop1['records']:,} input records -> {loop1['rows']:,} rows, "
              f"{loop1['n_tokens']:,} tokens (1x); {ray1['shards']} shards at 1x, {ray10['shards']} at {args.scale}x")
        print(f"{'run':<28}{'wall s':>8}{'start s':>9}{'records/s/core':>16}{'(steady)':>10}{'tokens/s/core':>15}"
              f"{'peak MB':>9}{'worker MB':>11}")
        for name, r in (("plain loop, 1 process", loop1), ("ray data, 1 CPU", ray1), ("ray data, 2 CPUs", ray2),
                        (f"ray data, 1 CPU, {args.scale}x", ray10_1),
                        (f"ray data, 2 CPUs, {args.scale}x", ray10),
                        ("ray data, 2 CPUs, BPE counts", raytok)):
            print(f"{name:<28}{r['wall']:>8.2f}{r.get('startup', 0):>9.2f}{r['rec_s_core']:>16,.0f}"
                  f"{r['rec_s_core_steady']:>10,.0f}{r['tok_s_core_steady']:>15,.0f}{r['peak_mb']:>9.0f}"
                  f"{r.get('worker_peak_mb', float('nan')):>11.0f}")
        for label, key in (("end to end", "rec_s_core"), ("steady (actors started)", "rec_s_core_steady")):
            print(f"ratio records/s per core vs plain loop, {label}: ray 1 CPU {ray1[key] / loop1[key]:.2f}, "
                  f"ray 2 CPUs {ray2[key] / loop1[key]:.2f}, ray 2 CPUs at {args.scale}x {ray10[key] / loop1[key]:.2f}")
        # at 1x the fixed start of the actors (seconds) is about the work itself; the 10x pair shows the scaling
        print(f"speedup (wall): ray 2 CPUs / ray 1 CPU {ray1['wall'] / ray2['wall']:.2f} (1x), "
              f"{ray10_1['wall'] / ray10['wall']:.2f} ({args.scale}x); "
              f"ray 2 CPUs at {args.scale}x / plain loop at 1x, records/s {ray10['records'] / ray10['wall'] / (loop1['records'] / loop1['wall']):.2f}")
        for name, r in ((f"ray 1 CPU, {args.scale}x", ray10_1), (f"ray 2 CPUs, {args.scale}x", ray10)):
            print(f"CPU seconds by process, {name} ({r['wall']:.1f} s wall): "
                  + ", ".join(f"{k} {v:.1f}" for k, v in sorted(r["cpu"].items(), key=lambda kv: -kv[1])))
        print(f"peak memory {args.scale}x / 1x: ray data worker {ray10['worker_peak_mb'] / ray2['worker_peak_mb']:.2f}, "
              f"ray total (driver + Ray processes) {ray10['peak_mb'] / ray2['peak_mb']:.2f}")
        for label, r in (("estimated", ray10), ("HF BPE tokenizer", raytok)):
            hours = KNOWCODER_TOKENS[corpus] / (r["tok_s_core_steady"] * 100) / 3600
            summary[(corpus, label)] = hours
            print(f"extrapolation ({label} token counts): KnowCoder's {KNOWCODER_TOKENS[corpus] / 1e9:.2f}B-token "
                  f"{corpus} corpus at {r['tok_s_core_steady']:,.0f} tokens/s per core = {hours:.4f} hours "
                  f"({hours * 3600:.0f} s) per 100 cores")
    print(f"\nsummary, hours per 100 cores (steady state, estimated / BPE-counted tokens): understanding "
          f"(1.5B tokens) {summary[('understanding', 'estimated')]:.4f} / {summary[('understanding', 'HF BPE tokenizer')]:.4f}, "
          f"following (1.17B tokens) {summary[('following', 'estimated')]:.4f} / {summary[('following', 'HF BPE tokenizer')]:.4f}; "
          f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
