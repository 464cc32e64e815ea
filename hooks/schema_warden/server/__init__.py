"""The throwaway PostgreSQL server: the only code that starts one. Imports errors only."""
