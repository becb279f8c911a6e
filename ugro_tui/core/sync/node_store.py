"""ugro's code store on a node. It runs ON the node: stdlib only, Python 3.8+.

Layout under the node's code dir (argv[2]; ~/.cache/ugro/code by default): `.objects/KEY` (a file's content; KEY
is its sha256, plus "x" when executable),
`HASH/` (a tree: hard links to objects, and symlinks), `.done/HASH` (written last: the tree is complete; a tree
without it is rebuilt). Objects arrive in a temp file, are checked against their hash, then renamed: a copy cut
off midway leaves nothing that is used.

  have   stdin: manifest JSON   -> {"complete": bool, "missing": [KEY, ...]}
  put    stdin: "KEY SIZE\\n" + bytes, repeated -> {"stored": N, "bytes": B}
  build  stdin: manifest JSON   -> {"built": HASH, "linked": N}
  gc     stdin: {"keep": [HASH...], "per_name": 5} -> {"removed": [HASH...], "objects": N}
  serve  the same as a conversation on one channel: lines "have JSON", "put" (frames, then "END 0"),
         "build JSON", "gc JSON"; one JSON line answers each ({"error": ...} on failure, then it exits).
"""

import contextlib
import hashlib
import json
import os
import shutil
import sys
import time

ROOT = OBJECTS = DONE = ""


def use_root(root):
    global ROOT, OBJECTS, DONE
    ROOT = os.path.expanduser(root)
    OBJECTS = os.path.join(ROOT, ".objects")
    DONE = os.path.join(ROOT, ".done")


class Failure(Exception):
    pass


def _safe(rel):
    """A manifest path must stay inside the tree."""
    parts = rel.split("/")
    if rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise Failure("refusing a path outside the tree: %r" % rel)
    return os.path.join(*parts)


def _key(row):
    return row[4] + ("x" if row[3] & 0o111 else "")


def have(manifest):
    """Without entries, only whether the tree is complete (a warm launch asks just that)."""
    done = os.path.exists(os.path.join(DONE, manifest["hash"])) and os.path.isdir(os.path.join(ROOT, manifest["hash"]))
    if "entries" not in manifest:
        return {"complete": done, "missing": None}
    missing = sorted({_key(r) for r in manifest["entries"] if r[1] == "f"
                      and not os.path.exists(os.path.join(OBJECTS, _key(r)))})
    return {"complete": done and not missing, "missing": missing}


def _read_exact(stream, size):
    chunks = []
    while size:
        chunk = stream.read(min(size, 1 << 20))
        if not chunk:
            raise Failure("the copy was cut off")
        chunks.append(chunk)
        size -= len(chunk)
    return chunks


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    try:  # a killed writer nobody reaped yet is a zombie: gone for our purpose
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _clear_dead_temps():
    """Temp files of a copy that was cut off (its writer is gone) are removed; a live writer's are left alone."""
    for name in os.listdir(OBJECTS):
        if not name.startswith(".tmp-"):
            continue
        try:
            pid = int(name.rsplit("-", 1)[1])
        except (ValueError, IndexError):
            continue
        if pid != os.getpid() and not _alive(pid):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(OBJECTS, name))


def put(stream):
    os.makedirs(OBJECTS, exist_ok=True)
    _clear_dead_temps()
    stored = total = 0
    while True:
        header = stream.readline()
        if not header or header == b"END 0\n":
            break
        key, size = header.decode().split()
        size = int(size)
        if not all(c in "0123456789abcdefx" for c in key) or len(key) not in (64, 65):
            raise Failure("bad object name %r" % key)
        tmp = os.path.join(OBJECTS, ".tmp-%s-%d" % (key, os.getpid()))
        digest = hashlib.sha256()
        try:
            with open(tmp, "wb") as f:
                for chunk in _read_exact(stream, size):
                    digest.update(chunk)
                    f.write(chunk)
            if digest.hexdigest() != key[:64]:
                raise Failure("object %s arrived damaged" % key[:12])
            os.chmod(tmp, 0o755 if key.endswith("x") else 0o644)
            os.replace(tmp, os.path.join(OBJECTS, key))
        except OSError as exc:
            raise Failure("%s writing %s" % (exc.strerror or exc, os.path.join(OBJECTS, key))) from None
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        stored += 1
        total += size
    return {"stored": stored, "bytes": total}


def build(manifest):
    tree_hash = manifest["hash"]
    if not all(c in "0123456789abcdef" for c in tree_hash):
        raise Failure("bad tree name %r" % tree_hash)
    target = os.path.join(ROOT, tree_hash)
    marker = os.path.join(DONE, tree_hash)
    if os.path.exists(marker) and os.path.isdir(target):
        return {"built": tree_hash, "linked": 0}
    tmp = target + ".tmp-%d" % os.getpid()
    shutil.rmtree(tmp, ignore_errors=True)
    if os.path.exists(target):  # a partial tree from a copy that was cut off: never used, built again
        shutil.rmtree(target, ignore_errors=True)
    linked = 0
    try:
        for row in manifest["entries"]:
            path = os.path.join(tmp, _safe(row[0]))
            parent = os.path.dirname(path)
            if not os.path.isdir(parent):
                os.makedirs(parent)
            if row[1] == "l":
                os.symlink(row[5], path)
                continue
            source = os.path.join(OBJECTS, _key(row))
            try:
                os.link(source, path)
            except OSError:  # a filesystem without hard links: a copy
                shutil.copy2(source, path)
            linked += 1
        os.makedirs(DONE, exist_ok=True)
        os.rename(tmp, target)
        with open(marker + ".tmp", "w") as f:
            json.dump({"name": manifest.get("name", ""), "t": time.time()}, f)
        os.replace(marker + ".tmp", marker)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise Failure("%s building %s" % (exc.strerror or exc, getattr(exc, "filename", None) or target)) from None
    return {"built": tree_hash, "linked": linked}


def gc(request):
    """Keep the newest `per_name` complete trees per job name and every tree in `keep`; objects no tree links go."""
    keep = set(request.get("keep") or [])
    per_name = int(request.get("per_name", 5))
    trees = []
    for tree_hash in os.listdir(DONE) if os.path.isdir(DONE) else []:
        if tree_hash.endswith(".tmp"):
            continue
        try:
            with open(os.path.join(DONE, tree_hash)) as f:
                meta = json.load(f)
        except (OSError, ValueError):
            meta = {}
        trees.append((meta.get("name", ""), meta.get("t", 0), tree_hash))
    seen = {}
    removed = []
    for name, _, tree_hash in sorted(trees, key=lambda t: -t[1]):
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > per_name and tree_hash not in keep:
            os.unlink(os.path.join(DONE, tree_hash))
            shutil.rmtree(os.path.join(ROOT, tree_hash), ignore_errors=True)
            removed.append(tree_hash)
    objects = 0
    now = time.time()
    for key in os.listdir(OBJECTS) if os.path.isdir(OBJECTS) else []:
        path = os.path.join(OBJECTS, key)
        try:
            st = os.stat(path)
        except OSError:
            continue
        stale_tmp = key.startswith(".tmp-") and now - st.st_mtime > 3600
        if stale_tmp or (not key.startswith(".tmp-") and st.st_nlink == 1):  # no tree links it any more
            os.unlink(path)
            objects += 1
    return {"removed": removed, "objects": objects}


VERBS = {"have": have, "build": build, "gc": gc}


def serve(stdin, stdout, tree_hash=None):
    """Answer requests until stdin closes; a failure is answered, then the conversation ends. Given a tree's
    hash, it first says (unasked) whether that tree is complete, as the shell does when it is."""
    if tree_hash:
        stdout.write((json.dumps(have({"hash": tree_hash})) + "\n").encode())
        stdout.flush()
    while True:
        line = stdin.readline()
        if not line:
            return 0
        verb, _, rest = line.decode("utf-8").rstrip("\n").partition(" ")
        try:
            out = put(stdin) if verb == "put" else VERBS[verb](json.loads(rest))
        except (Failure, OSError, KeyError, ValueError) as exc:
            if isinstance(exc, OSError):
                exc = "%s: %s" % (exc.strerror or exc, getattr(exc, "filename", "") or ROOT)
            stdout.write((json.dumps({"error": str(exc)}) + "\n").encode())
            stdout.flush()
            return 1
        stdout.write((json.dumps(out) + "\n").encode())
        stdout.flush()


def main(argv):
    stdin = sys.stdin.buffer
    use_root(argv[1] if len(argv) > 1 else "~/.cache/ugro/code")
    if argv[0] == "serve":
        return serve(stdin, sys.stdout.buffer, argv[2] if len(argv) > 2 else None)
    try:
        if argv[0] == "put":
            out = put(stdin)
        else:
            request = json.loads(stdin.read().decode("utf-8"))
            out = {"have": have, "build": build, "gc": gc}[argv[0]](request)
    except Failure as exc:
        sys.stderr.write("%s\n" % exc)
        return 1
    except OSError as exc:
        sys.stderr.write("%s: %s\n" % (exc.strerror or exc, getattr(exc, "filename", "") or ROOT))
        return 1
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
