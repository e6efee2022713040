"""The Ray side of bench/batch, run by the interpreter of a venv that has ray (bench/batch.py
--with-ray makes it; rgrid itself never depends on ray).

Usage: python ray_peer.py ADDRESS DASHBOARD_URL JOB_PY INPUTS_DIR JOBS PARALLEL
Prints one JSON object: {"jobs_s": ..., "jobs": N, "tasks_s": ..., "tasks": M}.

- Ray Jobs: one ``JobSubmissionClient.submit_job`` per input, its working directory (the script
  and that input) shipped as ``runtime_env={"working_dir": ...}``, ``entrypoint_num_cpus=1`` so
  Ray itself holds the parallelism to the cluster's CPUs; at most 2 x PARALLEL submitted and not
  yet finished (Ray starts a supervisor process per submitted job). Timed from the first submit
  to the last job's end.
- Ray tasks, for reference: one ``@ray.remote(num_cpus=1)`` task per input running the same
  subprocess in its own directory (Ray's task layer alone: no upload, download or sandbox).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ray
from ray.job_submission import JobStatus, JobSubmissionClient

TERMINAL = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}


def ray_jobs(dashboard: str, job_py: Path, inputs: list[Path], parallel: int) -> float:
    client = JobSubmissionClient(dashboard)
    staging = Path(tempfile.mkdtemp(prefix="ray-peer-jobs-"))
    dirs = []
    for i, path in enumerate(inputs):
        work = staging / f"job{i:05d}"
        work.mkdir()
        shutil.copy(job_py, work / "job.py")
        shutil.copy(path, work / "in.csv")
        dirs.append(work)
    pending, running, failed = list(dirs), set[str](), 0
    start = time.perf_counter()
    while pending or running:
        while pending and len(running) < 2 * parallel:
            running.add(
                client.submit_job(
                    entrypoint=f"{sys.executable} job.py in.csv",
                    runtime_env={"working_dir": str(pending.pop(0))},
                    entrypoint_num_cpus=1,
                )
            )
        for job in list(running):
            status = client.get_job_status(job)
            if status in TERMINAL:
                running.discard(job)
                failed += status != JobStatus.SUCCEEDED
        time.sleep(0.05)
    elapsed = time.perf_counter() - start
    shutil.rmtree(staging, ignore_errors=True)
    if failed:
        raise SystemExit(f"{failed} Ray jobs did not succeed")
    return elapsed


@ray.remote(num_cpus=1)
def one_task(job_py: str, path: str) -> int:
    work = Path(tempfile.mkdtemp(prefix="ray-peer-task-"))
    shutil.copy(job_py, work / "job.py")
    shutil.copy(path, work / "in.csv")
    code = subprocess.run([sys.executable, "job.py", "in.csv"], cwd=work).returncode
    shutil.rmtree(work, ignore_errors=True)
    return code


def ray_tasks(address: str, job_py: Path, inputs: list[Path]) -> float:
    ray.init(address=address, logging_level="ERROR", log_to_driver=False)
    ray.get(one_task.remote(str(job_py), str(inputs[0])))  # workers started, as rgrid is warm
    start = time.perf_counter()
    codes = ray.get([one_task.remote(str(job_py), str(path)) for path in inputs])
    elapsed = time.perf_counter() - start
    if any(codes):
        raise SystemExit("a Ray task's script failed")
    return elapsed


def main() -> None:
    address, dashboard, job_py, inputs_dir, jobs, parallel = sys.argv[1:7]
    inputs = sorted(Path(inputs_dir).iterdir())
    jobs_s = ray_jobs(dashboard, Path(job_py), inputs[: int(jobs)], int(parallel))
    tasks_s = ray_tasks(address, Path(job_py), inputs)
    print(
        json.dumps({"jobs_s": jobs_s, "jobs": int(jobs), "tasks_s": tasks_s, "tasks": len(inputs)})
    )


if __name__ == "__main__":
    main()
