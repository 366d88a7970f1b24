"""Switchboard's agent workers: one livekit-agents worker process per role.

    python -m worker <role> {start,dev}     see __main__.py; the roles are in roster.py

The process's life (register → drain → close) is lifecycle.py; what it does
with a job is server.py (accept as whom) and drill.py / realtime.py (what to
say). The handler never imports this package: it ships without these deps.
"""
