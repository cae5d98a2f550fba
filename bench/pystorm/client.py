"""The public 429 storm from Python's requests, with no retry logic.

THREADS threads each send PER_THREAD GETs to URL over one keep-alive
session, all released together; a GET that does not answer 200 counts as
failed. Prints one JSON line: ok, failed, statuses seen, and the makespan
in seconds (from the release to the last GET's end).
"""
import json
import sys
import threading
import time

import requests

url, threads, per_thread = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
start_gate = threading.Barrier(threads + 1)
lock = threading.Lock()
ok = failed = 0
statuses = {}
ends = []


def client():
    global ok, failed
    session = requests.Session()
    start_gate.wait()
    for _ in range(per_thread):
        try:
            r = session.get(url, timeout=120)
            r.content
            code = str(r.status_code)
        except requests.RequestException as e:
            code = type(e).__name__
        with lock:
            statuses[code] = statuses.get(code, 0) + 1
            if code == "200":
                ok += 1
            else:
                failed += 1
    with lock:
        ends.append(time.monotonic())


workers = [threading.Thread(target=client) for _ in range(threads)]
for w in workers:
    w.start()
start_gate.wait()
t0 = time.monotonic()
for w in workers:
    w.join()
print(json.dumps({"ok": ok, "failed": failed, "statuses": statuses, "makespan": max(ends) - t0}))
