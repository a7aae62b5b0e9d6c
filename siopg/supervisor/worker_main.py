"""`python -m siopg.supervisor.worker_main`: how the supervisor starts a worker process."""

from siopg.supervisor.worker import main

if __name__ == "__main__":  # importing it (tests, tools) must not start a worker
    main()
