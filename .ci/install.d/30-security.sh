# openssl CLI: tests/pgwire_security.rs makes its test CA and certificates with it.
if ! command -v openssl >/dev/null 2>&1; then
  apt_install openssl
fi
