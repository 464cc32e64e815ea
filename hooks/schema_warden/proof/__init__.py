"""What a check proves on a live throwaway database: the stairway, the round trip, drift,
the data check, a baseline's way down. Imports project, schema, cache, render, lint, server
and errors; never commands."""
