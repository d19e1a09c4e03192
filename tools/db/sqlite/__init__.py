"""The SQLite backend (``DATABASE_URL=sqlite:///...``): ``backend`` (connections, sessions),
``errors`` (sqlite3 exceptions translated), ``sql`` (statement routing, script splitting)."""
