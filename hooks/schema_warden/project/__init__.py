"""Find and load an Alembic project exactly as Alembic does, and run its env.py fenced in to
the throwaway server. One module a job: settings.py (``[tool.schema-warden]``), history.py
(revision files read statically), lazy.py (revision modules imported on first use),
imports.py (the project's modules kept apart), frames.py (its errors, its own frames),
environment.py and routing.py (what env.py sees and may reach), steps.py and session.py
(Alembic's steps and env.py's context driven step by step), accepted.py (findings accepted
as history), loader.py (the Project). Imports errors, cache, render; never proof or commands."""
