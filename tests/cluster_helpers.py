"""Separate Ray clusters for the cluster tests: free loopback ports, stopping one head's processes, and
`ray job submit` of a command from the repository root, waited for.

A job that Ray never starts (status PENDING long after submission: its supervisor actor was never
created, so none of our code ran) raises `JobNeverStarted` with the tail of the head's logs; the cluster
tests rerun once on a fresh cluster for that error only (`pytest.mark.flaky(only_rerun=...)`). One CI run
saw a job stay PENDING for 30 minutes, past Ray's own 15-minute start timeout, on a head that had passed
the same test many times."""
import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JobNeverStarted(Exception):
    """Ray did not start the submitted job's entrypoint in time."""


RERUN_IF_NEVER_STARTED = dict(reruns=1, only_rerun=["JobNeverStarted"])  # for pytest.mark.flaky


def head_logs(temp_dir: Path, lines: int = 30) -> str:
    """The last lines of the head's logs that say why a job did not start."""
    logs = temp_dir / "session_latest" / "logs"
    out = []
    for name in ("dashboard_agent.log", "runtime_env_agent.log", "raylet.out", "gcs_server.out"):
        tail = (logs / name).read_text(errors="replace").splitlines()[-lines:] if (logs / name).is_file() else []
        out.append(f"--- {name} ---\n" + "\n".join(tail))
    return "\n".join(out)


def stop_cluster(temp_dir: Path) -> None:
    """Stop only this head's processes (their command lines name its temp dir). `ray stop` would also
    kill the test session's own cluster, and with it this pytest process (a driver whose GCS is gone)."""
    import psutil

    procs = [p for p in psutil.process_iter(["cmdline"]) if str(temp_dir) in " ".join(p.info["cmdline"] or [])]
    for p in procs:
        p.terminate()
    _, alive = psutil.wait_procs(procs, timeout=20)
    for p in alive:
        p.kill()


def submit_and_wait(address: str, env: dict, argv: list[str], runtime_env: dict, head_temp: Path,
                    timeout: float = 1800, start_timeout: float = 600):
    """`ray job submit --no-wait --working-dir .` of `argv` from the repository root (retried while the
    head's job agent registers), then wait for the job to end: (status, logs, client, submission id).
    Raises JobNeverStarted if the job is still PENDING after `start_timeout` seconds."""
    for _ in range(40):  # the head's job agent registers a few seconds after `ray start` returns
        sub = subprocess.run(
            [BIN / "ray", "job", "submit", "--address", address, "--no-wait", "--working-dir", ".",
             "--runtime-env-json", json.dumps(runtime_env), "--", *argv],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
        if sub.returncode == 0 or "No available agent" not in sub.stderr:
            break
        time.sleep(3)
    assert sub.returncode == 0, sub.stderr[-2000:]
    submission_id = re.search(r"raysubmit_[A-Za-z0-9]+", sub.stdout).group(0)
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(address, headers={"Authorization": f"Bearer {env['RAY_AUTH_TOKEN']}"})
    submitted = time.time()
    while time.time() < submitted + timeout:
        status = client.get_job_status(submission_id)
        if status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
            break
        if status == JobStatus.PENDING and time.time() > submitted + start_timeout:
            raise JobNeverStarted(f"job {submission_id} still PENDING {start_timeout:.0f} s after submission; "
                                  f"the head's logs:\n{head_logs(head_temp)}")
        time.sleep(5)
    return status, client.get_job_logs(submission_id), client, submission_id
