"""QCG-PilotJob's API example (its docs/examples.rst, "Example API application") on PJ.

    python examples/qcg_api_example.py

The code is QCG's, step by step; only the two import lines changed (``qcg.pilotjob.api.manager``
and ``qcg.pilotjob.api.job`` became ``pj.qcg``). It runs 4 iterations of a small bash script on
every local core (or the Slurm allocation), and writes job.out.0 .. job.out.3 in the current
directory; the master's files (logs, jobs.jsonl) go to ./.qcgpjm-service-pj.N.
"""

from pj.qcg import Jobs, LocalManager

manager = LocalManager()

print('available resources: ', manager.resources())

jobs = Jobs().add(script='echo "job ${it} executed at `date` @ `hostname`"', stdout='job.out.${it}', iteration=4)
job_ids = manager.submit(jobs)
print('submited jobs: ', str(job_ids))

job_status = manager.status(job_ids)
print('job status: ', job_status)

manager.wait4(job_ids)

manager.wait4all()

job_info = manager.info(job_ids)
print('job detailed information: ', job_info)

manager.finish()
