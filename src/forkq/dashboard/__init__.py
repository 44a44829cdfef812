"""`forkq dashboard`: a web page over what the workers' events, the control plane, the broker
and the result backend already hold. The only package that imports Starlette, uvicorn and
Jinja2 (the `dashboard` extra); nothing below `forkq.cli` imports it, so a worker never loads
them.

    store (events) ─► feed.Feed (history, then a tail every 0.25 s) ─► views/*.py (page data)
                                  │                                    ├─► templates (first paint)
                                  └─► /stream (Server-Sent Events) ────┴─► static/dashboard.js
    actions.py (POST: grow, shrink, shutdown, revoke) ─► app.control / app.revoke
    security.py: auth on every route, CSRF on every POST; app.py wires them.
"""
