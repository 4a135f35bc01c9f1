"""Operating the system: the `paysys` console script and the process runner."""
