"""The framework baseline of bench/compare: a bare ASGI app under uvicorn that
writes request bodies to files, with no tus at all (no state, no locks, no checks).

It answers just enough of the tus requests for the benchmark client to drive it
the same way as a tus server: POST makes an empty file and answers 201 with a
Location; PATCH writes the body at Upload-Offset (one os.pwrite per chunk, on the
event loop, as a naive receiver would); HEAD reports the file's size.

    python bare_receiver.py PORT DIRECTORY
"""

import os
import secrets
import sys

import uvicorn

port, directory = int(sys.argv[1]), sys.argv[2]


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"].replace(".startup", ".startup.complete").replace(".shutdown", ".shutdown.complete")})
            if message["type"] == "lifespan.shutdown":
                return
    headers = dict(scope["headers"])
    method = scope["method"]
    status, out = 404, []
    if method == "POST":
        name = secrets.token_hex(16)
        os.close(os.open(os.path.join(directory, name), os.O_WRONLY | os.O_CREAT, 0o644))
        status, out = 201, [(b"location", f"http://127.0.0.1:{port}/files/{name}".encode())]
    elif method in ("PATCH", "HEAD"):
        path = os.path.join(directory, scope["path"].rsplit("/", 1)[1])
        if method == "PATCH":
            offset = int(headers.get(b"upload-offset", b"0"))
            fd = os.open(path, os.O_WRONLY)
            try:
                more = True
                while more:
                    message = await receive()
                    body = message.get("body", b"")
                    while body:
                        done = os.pwrite(fd, body, offset)
                        offset += done
                        body = body[done:]
                    more = message.get("more_body", False)
            finally:
                os.close(fd)
            status = 204
        else:
            offset = os.stat(path).st_size
            status = 200
        out = [(b"upload-offset", str(offset).encode())]
    await send({"type": "http.response.start", "status": status, "headers": out + [(b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
