"""Database I/O of each service, on its own engine. Each module touches one database only."""
