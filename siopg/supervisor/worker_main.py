"""`python -m siopg.supervisor.worker_main`: how the supervisor starts a worker process."""

from siopg.supervisor.worker import main

main()
