# Real Postgres clients for tests/pgwire_clients.rs: psycopg 3, asyncpg,
# SQLAlchemy 2 + pandas (Python), the PostgreSQL JDBC driver (Java) and
# node-postgres (Node). Each step skips what is already there.
if ! python3 -c 'import psycopg, asyncpg, sqlalchemy, pandas' >/dev/null 2>&1; then
  # PIP_BREAK_SYSTEM_PACKAGES: Debian's own python3 refuses system-wide pip
  # installs otherwise (PEP 668); CI machines are throwaway.
  PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --quiet --disable-pip-version-check \
    'psycopg[binary]>=3.1,<4' 'asyncpg>=0.29,<1' 'sqlalchemy>=2.0,<3' 'pandas>=2,<4'
fi
if [ ! -f /usr/share/java/postgresql.jar ]; then
  apt_install libpostgresql-jdbc-java
fi
if ! command -v javac >/dev/null 2>&1; then
  apt_install default-jdk-headless
fi
if [ ! -f tests/clients/node/node_modules/pg/package.json ]; then
  if [ -f tests/clients/node/package-lock.json ]; then
    (cd tests/clients/node && npm ci --no-audit --no-fund --loglevel=error)
  else
    (cd tests/clients/node && npm install --no-audit --no-fund --loglevel=error)
  fi
fi
