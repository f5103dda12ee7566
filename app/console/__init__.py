"""The operator console: the live drift board at `/` of every worker's internal listener.

* `board.py`: what the board shows, from the drift index's findings (pure: filters, rows, counts, pages);
* `health.py`: the health strip, from what `/api/health`, `/api/commands/status` and the metrics hold;
* `sse.py`: server-sent events, framed (pure); `live.py`: the change log fanned out to the browsers;
* `render.py`: the Jinja templates (`templates/`) and the static files (`static/`);
* `views.py`: the routes (`/`, `/events`, the fragments the page's script fetches, `/login`, `/logout`).

Every worker serves the same board: it reads the global drift index and its change log in Redis
(connectors/drift_index.py, connectors/drift_changes.py), whichever worker owns a customer.
"""
