"""What a check proves on a live throwaway database: the stairway, the round trip, drift,
the data check. Imports project, schema, cache and render; never commands."""
