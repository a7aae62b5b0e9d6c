"""siopg's live web dashboard: one HTML page fed by a JSON endpoint, for an aiohttp app.

```python
from siopg import dashboard
app = io.aiohttp_app()
dashboard.setup(io, app, path="/dashboard", auth=("admin", "secret"))
```

Everything shown comes from the server's own counters (`siopg.metrics.Metrics`) and live
objects, read at most twice a second and only while someone is looking. Without `auth`, do
not expose it beyond localhost or a private network. See dashboard/README.md.
"""

from __future__ import annotations

from siopg.dashboard.web import Dashboard, setup

__all__ = ["Dashboard", "setup"]
