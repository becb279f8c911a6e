"""Checking a job's datasets on a node before launch. It runs ON the node (stdlib, Python 3.8+), given as `-c`.

argv[1]: JSON [[path, min_gb, sha256], ...]. Prints JSON [[path, problem or null, size in bytes], ...]."""

import contextlib
import hashlib
import json
import os
import sys


def size_of(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(folder, name)).st_size
    return total


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check(path, min_gb, sha256):
    full = os.path.expanduser(path)
    if not os.path.exists(full):
        return "missing", None
    if not os.access(full, os.R_OK) or (os.path.isdir(full) and not os.access(full, os.X_OK)):
        return "not readable", None
    size = size_of(full) if (min_gb or not sha256) else None
    if min_gb and size < min_gb * 1e9:
        return "too small (%.2f GB, needs %g GB)" % (size / 1e9, min_gb), size
    if sha256:
        if not os.path.isfile(full):
            return "sha256 given, but it is a directory", size
        try:
            if sha256_of(full) != sha256:
                return "sha256 differs", size
        except OSError as exc:
            return "not readable (%s)" % exc.strerror, size
    return None, size


def main():
    out = []
    for path, min_gb, sha256 in json.loads(sys.argv[1]):
        problem, size = check(path, min_gb, sha256)
        out.append([path, problem, size])
    sys.stdout.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
