#!/usr/bin/env python3
"""Small helpers for measure.sh (JSON, lists, hashing). Subcommands:

  layers REF        "blob-digest toc-digest size" per layer of REF
                    (HOST:PORT/REPO:TAG, read over plain HTTP, not counted)
  stat FILE         "manifest blob-full blob-range other total bytes ranges"
                    from a countproxy /-/stats.json snapshot
  lists FILES OUTDIR PY_N SMALL_N SMALL_MAX SEED
                    write OUTDIR/py.list and OUTDIR/rand.list ("toc<TAB>path")
                    from FILES ("toc size path" per regular file)
  hashcount         stdin -> "bytes sha256"
"""
import hashlib
import json
import os
import random
import sys
import urllib.request

ACCEPT = ", ".join([
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
])
TOC_ANNOTATION = "containerd.io/snapshot/stargz/toc.digest"


def get(url):
    req = urllib.request.Request(url, headers={"Accept": ACCEPT})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def split_ref(ref):
    host, rest = ref.split("/", 1)
    if "@" in rest:
        repo, tag = rest.split("@", 1)
    elif ":" in rest.rsplit("/", 1)[-1]:
        repo, tag = rest.rsplit(":", 1)
    else:
        repo, tag = rest, "latest"
    return host, repo, tag


def layers(ref):
    host, repo, tag = split_ref(ref)
    m = get(f"http://{host}/v2/{repo}/manifests/{tag}")
    if "manifests" in m:  # an index: take linux/amd64
        pick = [d for d in m["manifests"]
                if d.get("platform", {}).get("os") == "linux"
                and d.get("platform", {}).get("architecture") == "amd64"]
        if not pick:
            sys.exit(f"{ref}: the index has no linux/amd64 manifest")
        m = get(f"http://{host}/v2/{repo}/manifests/{pick[0]['digest']}")
    for layer in m["layers"]:
        toc = (layer.get("annotations") or {}).get(TOC_ANNOTATION, "-")
        print(layer["digest"], toc, layer["size"])


def stat(path):
    with open(path) as f:
        s = json.load(f)

    def g(kind, field="requests"):
        return s.get(kind, {}).get(field, 0)

    print(g("manifest") + g("manifest-head"), g("blob-full"), g("blob-range"),
          g("blob-head") + g("other"), g("total"), g("total", "bytes"),
          g("blob-range", "ranges"))


def lists(files, outdir, py_n, small_n, small_max, seed):
    py_n, small_n, small_max = int(py_n), int(small_n), int(small_max)
    rows = []
    with open(files) as f:
        for line in f:
            toc, size, rel = line.rstrip("\n").split(" ", 2)
            rows.append((toc, int(size), rel))
    # About PY_N .py files under one package dir: of the dirs right below
    # site-/dist-packages or pythonX.Y, the one whose .py count is closest
    # to PY_N (or PY_PKG).
    groups = {}
    for toc, size, rel in rows:
        if not rel.endswith(".py"):
            continue
        parts = rel.split("/")
        for i, p in enumerate(parts[:-2]):
            if p in ("dist-packages", "site-packages") or (
                    p.startswith("python3") and parts[i + 1] not in ("dist-packages", "site-packages")):
                groups.setdefault("/".join(parts[: i + 2]), []).append((toc, rel))
                break
    pkg = os.environ.get("PY_PKG") or (
        min(groups, key=lambda k: (abs(len(groups[k]) - py_n), k)) if groups else None)
    py = sorted(groups.get(pkg, []), key=lambda x: x[1])
    small = sorted(((t, r) for t, s, r in rows if 0 < s <= small_max), key=lambda x: x[1])
    rand = random.Random(int(seed)).sample(small, min(small_n, len(small)))
    for name, chosen in (("py.list", py), ("rand.list", rand)):
        with open(os.path.join(outdir, name), "w") as f:
            f.writelines(f"{t}\t{r}\n" for t, r in chosen)
    size = {(t, r): s for t, s, r in rows}
    print(f"py.list: {len(py)} .py files under {pkg} ({sum(size[x] for x in py)} bytes); "
          f"rand.list: {len(rand)} random files of 1..{small_max} bytes "
          f"(seed {seed}, {sum(size[x] for x in rand)} bytes) out of {len(small)}; "
          f"the image has {len(rows)} regular files")


def hashcount():
    h, n = hashlib.sha256(), 0
    while True:
        b = sys.stdin.buffer.read(1 << 20)
        if not b:
            break
        h.update(b)
        n += len(b)
    print(n, h.hexdigest())


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"layers": layers, "stat": stat, "lists": lists, "hashcount": hashcount}[cmd](*args)
