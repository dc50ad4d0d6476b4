# psql, for the CLI and pgwire tests.
if ! command -v psql >/dev/null 2>&1; then
  apt_install postgresql-client
fi
