#!/usr/bin/python3
"""A FAKE replication engine for tests only: it speaks evac's external adapter
protocol (docs/adapters.md, protocol 1) and "replicates" file disks by copying
them between two folders that stand for the two sites' storage arrays.

It exists to test evac's side of the protocol and the conformance kit with a
real program, real files and real process handling. It is not an engine
anyone should run: no change tracking, whole-file copies.

Settings (evacd.yaml, replication_adapters[].settings):
  store:      this site's "array" (a folder)
  peer_store: the paired site's "array", where ship writes
  break:      for the tests of failures: hang | crash | exit | malformed |
              wrong_shape | lie | silent
  break_ops:  the operations that break (default: all but capabilities)
"""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

PROTOCOL = 1
BLOCK = 1 << 20


def answer(result=None, error=None):
    doc = {"protocol": PROTOCOL}
    if error is not None:
        doc["error"] = error
    else:
        doc["result"] = result if result is not None else {}
    sys.stdout.write(json.dumps(doc))
    sys.stdout.flush()


class AdapterError(Exception):
    def __init__(self, code, message, action=""):
        super().__init__(message)
        self.code, self.message, self.action = code, message, action


def progress(**fields):
    sys.stderr.write(json.dumps({"progress": fields}) + "\n")
    sys.stderr.flush()


def esc(key):
    return key.replace("/", "__")


def read_json(path, default=None):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return default


def write_json(path, doc):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)


def block_hashes(path):
    out = []
    with open(path, "rb") as f:
        while True:
            b = f.read(BLOCK)
            if not b:
                return out
            out.append(hashlib.sha256(b).hexdigest())


def virtual_size(path):
    out = subprocess.run(["qemu-img", "info", "-U", "--output=json", path], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)["virtual-size"]


def copy_file(src, dst):
    subprocess.run(["cp", "--sparse=always", src, dst], check=True)


class Site:
    def __init__(self, envelope):
        self.settings = envelope.get("settings", {})
        self.store = self.settings["store"]
        self.peer_store = self.settings.get("peer_store", "")
        self.site = envelope["site"]["name"]

    def group_dir(self, group, store=None):
        d = os.path.join(store or self.store, "groups", group)
        os.makedirs(d, exist_ok=True)
        return d

    def sub(self, group, name, store=None):
        d = os.path.join(self.group_dir(group, store), name)
        os.makedirs(d, exist_ok=True)
        return d

    def pits(self, group):
        out = []
        root = self.sub(group, "pits")
        for pid in os.listdir(root):
            doc = read_json(os.path.join(root, pid, "pit.json"))
            if doc:
                out.append(doc)
        out.sort(key=lambda p: p["created_at_ms"])
        return out

    def copies(self, group, store=None):
        root = self.sub(group, "copies", store)
        out = []
        for cid in sorted(os.listdir(root)):
            doc = read_json(os.path.join(root, cid, "copy.json"))
            if doc:
                out.append(doc)
        return out


def op_capabilities(site, req):
    return {"adapter_version": "fake-copy 1",
            "capabilities": {"points_in_time": True, "test_copies": True, "reverse": True,
                             "cross_vm_consistency": True, "read_only_source": True}}


def source_path(dev):
    src = dev["source"]
    if src["type"] not in ("file", "block") or not src["path"]:
        raise AdapterError("unsupported", "disk %s is a %s disk: this fake copies files only" % (dev["key"], src["type"]))
    return src["path"]


def op_discover(site, req):
    devices = []
    for vm in req["group"]["vms"]:
        for d in vm["disks"]:
            if d.get("device", "disk") == "cdrom":
                continue
            path = d.get("source", {}).get("path") or d["path"]
            if not os.path.exists(path):
                raise AdapterError("not_found", "disk %s of VM %s: %s does not exist" % (d["target"], vm["name"], path),
                                   "create the disk, or remove it from the VM")
            devices.append({"vm_uuid": vm["uuid"], "disk": d["target"], "size_bytes": virtual_size(path)})
    return {"devices": devices}


def op_snapshot(site, req):
    group, pit = req["group"]["group"], req["pit"]
    snap = os.path.join(site.sub(group, "snapshots"), pit["id"])
    os.makedirs(snap, exist_ok=True)
    disks = []
    for dev in req["devices"]:
        dst = os.path.join(snap, esc(dev["key"]) + ".img")
        copy_file(source_path(dev), dst)
        disks.append({"key": dev["key"], "file": dst, "hashes": block_hashes(dst)})
    write_json(os.path.join(snap, "snapshot.json"), {"pit": pit, "disks": disks})
    return {}


def op_ship(site, req, lie=False):
    group, pit = req["group"]["group"], req["pit"]
    snap = os.path.join(site.sub(group, "snapshots"), pit["id"])
    meta = read_json(os.path.join(snap, "snapshot.json"))
    if meta is None:
        raise AdapterError("not_found", "no snapshot %s of group %s here" % (pit["id"], group))
    incoming = os.path.join(site.sub(group, "incoming", site.peer_store), pit["id"])
    shutil.rmtree(incoming, ignore_errors=True)
    os.makedirs(incoming)
    total = sum(os.path.getsize(d["file"]) for d in meta["disks"])
    sent, disks = 0, []
    for d in meta["disks"]:
        dst = os.path.join(incoming, esc(d["key"]) + ".img")
        if lie:  # ships a disk of the right size holding nothing
            with open(dst, "wb") as f:
                f.truncate(os.path.getsize(d["file"]))
        else:
            copy_file(d["file"], dst)
        sent += os.path.getsize(d["file"])
        progress(bytes_total=total, bytes_scanned=sent, bytes_sent=sent)
        disks.append({"key": d["key"], "name": esc(d["key"]) + ".img", "size_bytes": virtual_size(d["file"]),
                      "hashes": d["hashes"]})
    write_json(os.path.join(incoming, "pit.json"),
               {"id": pit["id"], "group": group, "created_at": pit["created_at_ms"] // 1000,
                "created_at_ms": pit["created_at_ms"], "disks": disks})
    final = os.path.join(site.sub(group, "pits", site.peer_store), pit["id"])
    os.rename(incoming, final)
    shutil.rmtree(snap, ignore_errors=True)
    return {"bytes_sent": sent}


def pit_answer(site, group, doc):
    root = os.path.join(site.sub(group, "pits"), doc["id"])
    return {"id": doc["id"], "group": group, "created_at": doc["created_at"], "created_at_ms": doc["created_at_ms"],
            "disks": [{"key": d["key"], "path": os.path.join(root, d["name"]), "size_bytes": d["size_bytes"]}
                      for d in doc["disks"]]}


def op_await_pit(site, req):
    group, pid = req["group"], req["pit"]["id"]
    deadline = time.time() + min(req.get("wait_seconds", 20), 20)
    while True:
        doc = read_json(os.path.join(site.sub(group, "pits"), pid, "pit.json"))
        if doc:
            return {"complete": True, "pit": pit_answer(site, group, doc)}
        if time.time() >= deadline:
            return {"complete": False}
        time.sleep(0.1)


def op_expire_pits(site, req):
    group = req["group"]["group"]
    pinned = {c["pit_id"] for c in site.copies(group, site.peer_store)}
    for pid in req["pit_ids"]:
        if pid in pinned:
            raise AdapterError("failed_precondition", "point in time %s has a copy" % pid)
        shutil.rmtree(os.path.join(site.sub(group, "pits", site.peer_store), pid), ignore_errors=True)
    return {}


def op_list_pits(site, req):
    group = req["group"]
    return {"pits": [pit_answer(site, group, p) for p in site.pits(group)]}


def make_copy(site, group, pit_id, owner, live):
    pits = site.pits(group)
    if not pit_id and pits:
        pit_id = pits[-1]["id"]
    for c in site.copies(group):
        if owner and c["owner"] == owner and c["live"] == live:
            return c
    doc = next((p for p in pits if p["id"] == pit_id), None)
    if doc is None:
        raise AdapterError("not_found", "group %s has no point in time %s here" % (group, pit_id))
    n = len(os.listdir(site.sub(group, "copies"))) + 1
    cid = ("live-%d" if live else "test-%d") % n
    root = os.path.join(site.sub(group, "copies"), cid)
    os.makedirs(root, exist_ok=True)
    disks = []
    for d in pit_answer(site, group, doc)["disks"]:
        dst = os.path.join(root, esc(d["key"]) + ".img")
        copy_file(d["path"], dst)
        disks.append({"key": d["key"], "path": dst, "size_bytes": d["size_bytes"]})
    copy = {"id": cid, "pit_id": pit_id, "disks": disks, "owner": owner, "live": live}
    write_json(os.path.join(root, "copy.json"), copy)
    return copy


def op_create_test_copy(site, req):
    return {"copy": make_copy(site, req["group"], req["pit_id"], req.get("owner", ""), False)}


def op_failover(site, req):
    return {"copy": make_copy(site, req["group"], req["pit_id"], req.get("owner", ""), True)}


def op_drop_test_copy(site, req):
    root = os.path.join(site.sub(req["group"], "copies"), req["copy_id"])
    doc = read_json(os.path.join(root, "copy.json"))
    if doc and doc["live"]:
        raise AdapterError("failed_precondition", "copy %s is a recovered VM's live disks" % req["copy_id"])
    shutil.rmtree(root, ignore_errors=True)
    return {}


def op_list_test_copies(site, req):
    return {"copies": site.copies(req["group"])}


def vm_files(req):
    for vm in req["group"]["vms"]:
        for d in vm["disks"]:
            p = d.get("source", {}).get("path") or d["path"]
            if p and d.get("device", "disk") != "cdrom":
                yield p


def chattr(flag, path):
    # Immutable, so that root (evac) cannot write it either.
    r = subprocess.run(["chattr", flag, path], capture_output=True, text=True)
    if r.returncode != 0:
        raise AdapterError("failed_precondition", "chattr %s %s: %s" % (flag, path, r.stderr.strip()),
                           "keep the disks on a filesystem with immutable files (ext4, xfs, btrfs)")


def op_prepare_failover(site, req):
    for p in vm_files(req):
        if os.path.exists(p):
            chattr("+i", p)
    return {}


def op_release_source(site, req):
    for p in vm_files(req):
        if os.path.exists(p):
            chattr("-i", p)
    return {}


def op_check_read_only_source(site, req):
    for p in vm_files(req):
        if not os.path.exists(p):
            raise AdapterError("not_found", "%s does not exist" % p)
    return {}


def op_prepare_reverse(site, req):
    return {}


def op_release_replicas(site, req):
    group = req["group"]
    out = {"flattened": [], "released_copies": [], "removed_pits": [], "kept_pits": []}
    for c in site.copies(group):
        if c["live"]:
            os.remove(os.path.join(site.sub(group, "copies"), c["id"], "copy.json"))
            out["released_copies"].append(c["id"])
    for p in site.pits(group):
        shutil.rmtree(os.path.join(site.sub(group, "pits"), p["id"]))
        out["removed_pits"].append(p["id"])
    return out


def op_verify(site, req):
    group, pit_id = req["group"], req["pit_id"]
    pits = site.pits(group)
    doc = next((p for p in pits if p["id"] == pit_id), pits[-1] if pits and not pit_id else None)
    if doc is None:
        raise AdapterError("not_found", "group %s has no point in time %s here" % (group, pit_id))
    disks = []
    root = os.path.join(site.sub(group, "pits"), doc["id"])
    for d in doc["disks"]:
        now = block_hashes(os.path.join(root, d["name"]))
        bad = [i * BLOCK for i, (a, b) in enumerate(zip(now, d["hashes"])) if a != b]
        bad += [i * BLOCK for i in range(min(len(now), len(d["hashes"])), max(len(now), len(d["hashes"])))]
        disks.append({"key": d["key"], "blocks_checked": len(d["hashes"]), "blocks_mismatched": len(bad),
                      "first_mismatches": bad[:16]})
    return {"group": group, "pit_id": doc["id"], "disks": disks}


def main():
    envelope = json.load(sys.stdin)
    if envelope.get("protocol") != PROTOCOL:
        answer(error={"code": "invalid_argument", "message": "fake-copy speaks protocol 1 only"})
        return 0
    op = envelope["operation"]
    settings = envelope.get("settings", {})
    broken = settings.get("break", "")
    if broken and op in settings.get("break_ops", [op]) and op != "capabilities":
        if broken == "hang":
            subprocess.Popen(["sleep", "1000"])  # a child in its group: evac's kill must reach it too
            time.sleep(1000)
        if broken == "crash":
            os.kill(os.getpid(), signal.SIGSEGV)
        if broken == "exit":
            sys.stderr.write("fake-copy: cannot reach the array\n")
            return 3
        if broken == "malformed":
            sys.stdout.write('{"protocol": 1, "result": {"pits": [')
            return 0
        if broken == "silent":
            return 0
        if broken == "wrong_shape":
            answer({"pits": [{"id": 7, "group": envelope["request"].get("group")}]} if op == "list_pits"
                   else {"unexpected": True})
            return 0
    handler = globals().get("op_" + op)
    if handler is None:
        answer(error={"code": "unsupported", "message": "fake-copy has no operation " + op})
        return 0
    site = Site(envelope)
    try:
        if op == "ship":
            answer(op_ship(site, envelope["request"], lie=(broken == "lie")))
        else:
            answer(handler(site, envelope["request"]))
    except AdapterError as e:
        answer(error={"code": e.code, "message": e.message, "action": e.action})
    return 0


if __name__ == "__main__":
    sys.exit(main())
