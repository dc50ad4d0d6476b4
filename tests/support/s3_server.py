"""A real S3-compatible server for Strata's tests: moto's S3 in server mode,
on a free loopback port, serving ONE request at a time.

Why single-threaded: moto checks `If-None-Match: *` and then writes the
object as two steps of one request. Under moto's default threaded server two
racing conditional creates can both pass the check and both "win"; real S3
(and GCS, Azure, MinIO) lets exactly one win. With one thread, a request runs
start to finish before the next is read, so a check and its write cannot
interleave with another request's: conditional creates are atomic, as on
real S3. `tests/s3.rs` shows it (`conditional_create_is_atomic`: many racing
creates of one key, exactly one succeeds).

The server speaks HTTP/1.0 (werkzeug's default when neither threaded nor
forking), so each connection carries one request and a client's idle
keep-alive connection cannot block the single thread.

Usage: s3_server.py BUCKET [BUCKET…]
Prints `listening on 127.0.0.1:PORT` once the buckets exist; runs until
killed (or until its stdin closes, so a dead test leaves no server behind).
"""

import os
import sys
import threading
import urllib.request

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server


AUTH = (
    "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, "
    "SignedHeaders=host, Signature=0"
)


def main() -> None:
    buckets = sys.argv[1:]
    app = DomainDispatcherApplication(create_backend_app)
    server = make_server("127.0.0.1", 0, app, threaded=False, processes=1)
    port = server.server_port
    os.environ["MOTO_PORT"] = str(port)

    def setup() -> None:
        for b in buckets:
            # moto picks the service from the signature's credential scope.
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/{b}",
                method="PUT",
                headers={"Authorization": AUTH},
            )
            urllib.request.urlopen(req).read()
        print(f"listening on 127.0.0.1:{port}", flush=True)

    def watch_stdin() -> None:
        # The test holds our stdin open; when it exits (even killed), stop.
        sys.stdin.read()
        os._exit(0)

    threading.Thread(target=setup, daemon=True).start()
    threading.Thread(target=watch_stdin, daemon=True).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
