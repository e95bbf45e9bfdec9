"""Who my peers are: one module per discovery method, each returning [{name, address}]
sorted by name, so every node of a cluster derives the same member list."""
