"""Exit tables, the file between `profiling` (which writes them) and `offload` (which reads
them): :mod:`exit_tables.schema` holds the schema of docs/interfaces.md, section 1, that both
sides read. It belongs to neither package, and needs only numpy and pandas."""
