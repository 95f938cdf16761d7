"""Drives `host serve --model M` with OpenAI's own Python client.

usage: openai_client.py BASE_URL MODEL_ID IMAGE_DIR

Checks, each with its own message on failure: a request with an image,
whole and streamed (with usage); stop strings; eight concurrent clients; a
client that goes away mid-stream; and bad requests answered with OpenAI's
error shape while the server stays up. Prints one JSON line of figures the
Rust test reads.
"""

import base64
import concurrent.futures
import socket
import json
import pathlib
import struct
import sys
import time
import zlib

import urllib.error
import urllib.request
import openai

BASE, MODEL, IMAGE_DIR = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3])
client = openai.OpenAI(base_url=BASE, api_key="unused", max_retries=0, timeout=120)


def png(width, height):
    """A small gradient PNG, written without third-party packages."""
    rows = b"".join(
        b"\x00" + b"".join(bytes((x * 255 // width, y * 255 // height, 128)) for x in range(width))
        for y in range(height)
    )

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def data_uri(width, height):
    return "data:image/png;base64," + base64.b64encode(png(width, height)).decode()


def image_message(url, text="Describe this image."):
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": text}]}]


def check(cond, what):
    if not cond:
        raise SystemExit(f"FAILED: {what}")


figures = {}

# The model list names the served model.
models = client.models.list()
check([m.id for m in models.data] == [MODEL], f"models: {models}")

# A whole response with an image.
url = data_uri(64, 48)
r = client.chat.completions.create(
    model=MODEL, messages=image_message(url), max_tokens=6, temperature=0, extra_body={"ignore_eos": True}
)
check(r.choices[0].finish_reason == "length", f"finish_reason: {r.choices[0].finish_reason}")
check(r.usage.completion_tokens == 6, f"usage: {r.usage}")
check(r.usage.prompt_tokens > 16, f"an image adds tokens: {r.usage}")
whole = r.choices[0].message.content
check(isinstance(whole, str) and whole, f"content: {whole!r}")
figures["prompt_tokens"] = r.usage.prompt_tokens
# Again, now from the prefix cache: the streamed request below takes the
# same path, so the two answers can be compared token for token.
r = client.chat.completions.create(
    model=MODEL, messages=image_message(url), max_tokens=6, temperature=0, extra_body={"ignore_eos": True}
)
check(r.usage.prompt_tokens_details.cached_tokens > 0, f"cached tokens: {r.usage}")
whole = r.choices[0].message.content

# The same request streamed: the same text, and usage at the end.
stream = client.chat.completions.create(
    model=MODEL,
    messages=image_message(url),
    max_tokens=6,
    temperature=0,
    stream=True,
    stream_options={"include_usage": True},
    extra_body={"ignore_eos": True},
)
pieces, usage, finish = [], None, None
for chunk in stream:
    if chunk.usage is not None:
        usage = chunk.usage
    for c in chunk.choices:
        if c.delta.content:
            pieces.append(c.delta.content)
        if c.finish_reason:
            finish = c.finish_reason
check("".join(pieces) == whole, f"streamed {''.join(pieces)!r} != whole {whole!r}")
check(finish == "length" and usage is not None and usage.completion_tokens == 6, f"stream end: {finish} {usage}")
# The second identical request reused the first one's prompt.
check(usage.prompt_tokens_details.cached_tokens > 0, f"cached tokens: {usage}")

# A stop string: the text ends before it, finish reason stop.
long = client.chat.completions.create(
    model=MODEL, messages=[{"role": "user", "content": "Count."}], max_tokens=24, temperature=0,
    extra_body={"ignore_eos": True},
)
# The stopped request below reuses the cached prompt: so does this one.
long = client.chat.completions.create(
    model=MODEL, messages=[{"role": "user", "content": "Count."}], max_tokens=24, temperature=0,
    extra_body={"ignore_eos": True},
)
text = long.choices[0].message.content
check(len(text) > 4, f"24 forced tokens gave only {text!r}")
stop = text[len(text) // 2 : len(text) // 2 + 2]
cut = client.chat.completions.create(
    model=MODEL, messages=[{"role": "user", "content": "Count."}], max_tokens=24, temperature=0,
    stop=[stop], extra_body={"ignore_eos": True},
)
got = cut.choices[0].message.content
check(cut.choices[0].finish_reason == "stop", f"stop finish: {cut.choices[0].finish_reason}")
check(got == text[: text.index(stop)], f"stop {stop!r}: {got!r} from {text!r}")

# Eight clients at once, each with its own image: all answered, in one
# running batch, with the answers each request gets alone.
def one(i):
    resp = client.chat.completions.create(
        model=MODEL, messages=image_message(data_uri(32 + 8 * i, 32)), max_tokens=24, temperature=0,
        extra_body={"ignore_eos": True},
    )
    return resp.usage.completion_tokens, resp.choices[0].message.content

alone = [one(i) for i in range(8)]
start = time.time()
with concurrent.futures.ThreadPoolExecutor(8) as pool:
    together = list(pool.map(one, range(8)))
figures["eight_clients_s"] = round(time.time() - start, 3)
check([n for n, _ in together] == [24] * 8, f"concurrent: {together}")
check(together == alone, f"batched answers differ from solo ones: {together} vs {alone}")

# Two concurrent requests with one image behind different text: the second
# takes the first's vision features from the cache.
def metric(name):
    text = urllib.request.urlopen(BASE.rsplit("/v1", 1)[0] + "/metrics", timeout=30).read().decode()
    return int(next(l for l in text.splitlines() if l.startswith(name + " ")).split()[-1])


peak = metric("vlm_batch_size_peak")
check(peak > 1, f"the eight clients were decoded together (peak batch {peak})")
figures["batch_size_peak"] = peak

shared = data_uri(96, 64)
hits_before, misses_before = metric("vlm_vision_cache_hits_total"), metric("vlm_vision_cache_misses_total")


def behind(prefix):
    content = [{"type": "text", "text": prefix}, {"type": "image_url", "image_url": {"url": shared}}]
    return client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": content}], max_tokens=2, temperature=0
    )


with concurrent.futures.ThreadPoolExecutor(2) as pool:
    list(pool.map(behind, ["First look at this.", "Now something else entirely:"]))
check(metric("vlm_vision_cache_misses_total") - misses_before == 1, "the shared image was encoded once")
check(metric("vlm_vision_cache_hits_total") - hits_before == 1, "the second request reused its features")

# A client that goes away mid-stream: the server stays up and answers the next.
stream = client.chat.completions.create(
    model=MODEL, messages=[{"role": "user", "content": "Go on."}], max_tokens=2000, temperature=0,
    stream=True, extra_body={"ignore_eos": True},
)
for i, _ in enumerate(stream):
    if i == 3:
        break
stream.close()
after = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
check(after.usage.completion_tokens >= 1, "answered after a disconnect")

# A file:// image inside the granted folder.
(IMAGE_DIR / "granted.png").write_bytes(png(40, 40))
r = client.chat.completions.create(
    model=MODEL, messages=image_message(f"file://{IMAGE_DIR / 'granted.png'}"), max_tokens=2
)
check(r.usage.prompt_tokens > 16, "file:// in the granted folder")

# Bad requests: OpenAI-style errors with 4xx statuses, and the server stays up.
def refused(expect_status, want, **kwargs):
    try:
        client.chat.completions.create(**kwargs)
    except openai.APIStatusError as e:
        check(e.status_code == expect_status, f"{want}: status {e.status_code}, body {e.body}")
        message = (e.body or {}).get("message", "") if isinstance(e.body, dict) else str(e.body)
        check(want in message, f"{want!r} not in {message!r}")
        return
    raise SystemExit(f"FAILED: accepted a request that should fail ({want})")

ok = dict(model=MODEL, messages=[{"role": "user", "content": "x"}], max_tokens=2)
refused(404, "does not exist", **{**ok, "model": "gpt-4o"})
refused(400, "messages is empty", **{**ok, "messages": []})
refused(400, "max_tokens must be", **{**ok, "max_tokens": 10**9})
refused(400, "base64", **{**ok, "messages": image_message("data:image/png;base64,@@@")})
refused(400, "not a recognised image format", **{**ok, "messages": image_message("data:image/png;base64," + base64.b64encode(b"hello").decode())})
refused(400, "not inside a folder granted", **{**ok, "messages": image_message("file:///etc/hostname")})
refused(400, "images go in user messages", **{**ok, "messages": [{"role": "assistant", "content": [{"type": "image_url", "image_url": {"url": url}}]}]})

ROOT = BASE.rsplit("/v1", 1)[0]


def raw(method, path, body=None):
    """Status and text of a request sent without OpenAI's client."""
    req = urllib.request.Request(ROOT + path, data=body, method=method, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


status, text = raw("POST", "/v1/chat/completions", b"{not json")
check(status == 400 and "error" in json.loads(text), f"malformed JSON: {status} {text}")
# A 50 MB body: refused from its declared length, before the server reads it.
host, port = ROOT.split("//", 1)[1].split(":")
with socket.create_connection((host, int(port)), timeout=60) as sock:
    # Only the head is sent: the answer must come without the body (sending
    # more races the server closing the connection after it answers).
    sock.sendall(
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {50 << 20}\r\n\r\n".encode()
    )
    reply = b""
    while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
        part = sock.recv(65536)
        if not part:
            break
        reply += part
head, _, body = reply.partition(b"\r\n\r\n")
status = int(head.split()[1])
check(status == 413 and b'"error"' in body, f"50 MB body: {head[:80]!r} {body[:200]!r}")
status, text = raw("GET", "/health")
check(status == 200 and json.loads(text) == {"status": "ok"}, "health")
metrics = raw("GET", "/metrics")[1]
completed = [l for l in metrics.splitlines() if l.startswith('vlm_requests_total{status="completed"}')]
figures["completed"] = int(completed[0].split()[-1])
cancelled = [l for l in metrics.splitlines() if l.startswith('vlm_requests_total{status="cancelled"}')]
figures["cancelled"] = int(cancelled[0].split()[-1])
print(json.dumps(figures))
