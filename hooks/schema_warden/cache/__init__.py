"""What was proven or read before, keyed by content: revision proofs, static readings of
revision files, the models' snapshot. Imports schema and errors."""
