"""Merge the LoRA adapter into its base: a plain HF model folder for engines without adapter support."""
from common import artifact, job_main, knowcoder


def run(cfg: dict) -> None:
    knowcoder("merge", "--adapter", artifact(cfg, "adapter"), "--out", artifact(cfg, "merged"),
              "--base", artifact(cfg, "pretrained"))


if __name__ == "__main__":
    job_main(run, __doc__)
