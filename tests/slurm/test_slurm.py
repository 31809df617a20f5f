"""Against a real SLURM controller: a batch job and a Dask SLURMCluster map.

Skipped where SLURM is not installed or no controller answers; .ci/slurm/checks.sh
starts a one-node cluster (.ci/slurm/up.sh) and runs these with .venv-slurm, which
holds dask-jobqueue.
"""

from __future__ import annotations

import math
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.slurm


@pytest.fixture(scope="module")
def slurm_controller() -> None:
    if shutil.which("sinfo") is None or shutil.which("scontrol") is None:
        pytest.skip("SLURM client commands (sinfo, scontrol) not installed")
    # `scontrol ping` answers at once; sinfo retries for ~10 s when no controller is up.
    try:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"scontrol ping failed: {exc}")
    if "is UP" not in ping.stdout:
        pytest.skip(f"no SLURM controller answers: {ping.stdout.strip().splitlines()[0] if ping.stdout else ping.stderr}")


def test_batch_job_runs(slurm_controller, tmp_path):
    output = tmp_path / "job.out"
    job = subprocess.run(
        ["sbatch", "--wait", "--parsable", "--job-name=skysift-test", "--ntasks=1", "--mem=100M", "--time=1",
         f"--output={output}", "--wrap", 'echo "job $SLURM_JOB_ID tasks $SLURM_NTASKS"'],
        capture_output=True, text=True, timeout=120,
    )
    assert job.returncode == 0, job.stderr
    job_id = job.stdout.strip().split(";")[0]
    assert output.read_text().split() == ["job", job_id, "tasks", "1"]


def test_slurm_cluster_maps(slurm_controller, tmp_path):
    pytest.importorskip("dask_jobqueue")
    from skysift.parallel import close_client, get_client, parallel_map

    client = get_client("slurm", cores=1, memory="1GB", walltime="00:05:00", n_jobs=2,
                         log_directory=str(tmp_path), worker_timeout=90)
    try:
        assert parallel_map(math.isqrt, [0, 1, 4, 9, 16, 25], client=client, desc="roots") == [0, 1, 2, 3, 4, 5]
        with pytest.raises(ValueError, match="item 1 of 2"):
            parallel_map(math.sqrt, [1.0, -1.0], client=client, desc="roots")
    finally:
        close_client(client)
