"""ClickHouse access: one schema, one SQL, an embedded (chDB) and a server backend."""
