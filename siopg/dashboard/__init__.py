"""siopg's live web dashboard: one HTML page fed by a JSON endpoint, for an aiohttp app.

```python
from siopg import dashboard
app = io.aiohttp_app()
dashboard.setup(io, app, path="/dashboard", auth=("admin", "secret"))
```

The page shows the whole cluster, whichever server answers: every server publishes a compact
snapshot of its aggregates (counters of `siopg.metrics.Metrics`, sockets by transport and
namespace, rooms, a few minutes of history) every couple of seconds; with the Postgres
adapter it goes to the database beside the server's heartbeat, where every server and
`siopg dashboard --database-url URL` read it. Without `auth`, do not expose it beyond
localhost or a private network. See dashboard/README.md.
"""

from __future__ import annotations

from siopg.dashboard.board import publish
from siopg.dashboard.web import Dashboard, setup

__all__ = ["Dashboard", "publish", "setup"]
