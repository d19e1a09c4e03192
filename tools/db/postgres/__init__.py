"""The PostgreSQL backend (``DATABASE_URL=postgresql://...``, needs asyncpg): ``backend``
(the pool, sessions), ``errors`` (asyncpg exceptions translated by SQLSTATE), ``sql``
(``?`` placeholders to ``$n``, statement shape, script splitting)."""
