"""Gateway for teams: virtual keys, teams, users, budgets and spend (LiteLLM proxy compatible).

The storage side: the tables (``_models``) and their Alembic migrations (``migrations/``),
the database URL and async engine (``_db``), the store (``_store``), key hashing
(``_keys``), the spend writer (``_spend``) and the gateway's cached view of it all
(``_access``). The gateway's routes live in ``modelport.server._teams``, the CLI in
``modelport._cli_teams``.

Importing this package needs no database driver; ``_store``, ``_models`` and ``_access``
need SQLAlchemy (``modelport[server]``).
"""

from ._db import DEFAULT_DATABASE, database_url_for, safe_url
from ._fields import TeamsError
from ._keys import hash_key, new_key, token_of

__all__ = ["DEFAULT_DATABASE", "database_url_for", "safe_url", "TeamsError", "hash_key", "new_key", "token_of"]
