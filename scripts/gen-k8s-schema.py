#!/usr/bin/env python3
"""Generates src/registry/decode/k8s-schema.json, the table lifeboat decodes the API server's
protobuf values with, from the official Kubernetes sources:

- each package's generated.proto: messages, field numbers and types;
- the Go types (types*.go) of the same package: each field's JSON name, whether it has
  `omitempty`, whether the Go field is a pointer (gogo protobuf writes non-pointer scalars even
  when zero; Go's JSON drops them only with omitempty and without a pointer), and `,inline`
  embedded structs, whose fields JSON flattens into the parent;
- each package's register.go: its API group, so (apiVersion, kind) finds its message.

usage: scripts/gen-k8s-schema.py API APIMACHINERY APIEXTENSIONS AGGREGATOR > src/registry/decode/k8s-schema.json
where each argument is a git directory (or work tree) of kubernetes/api, kubernetes/apimachinery,
kubernetes/apiextensions-apiserver and kubernetes/kube-aggregator, read at HEAD (`fetch` them, or
`git clone --bare`). The commits used are recorded in the output.
"""
import json
import re
import subprocess
import sys

FIELD = re.compile(
    r"^\s*(optional|repeated)\s+([\w.]+)\s+(\w+)\s*=\s*(\d+)\s*;|^\s*map<\s*([\w.]+)\s*,\s*([\w.]+)\s*>\s+(\w+)\s*=\s*(\d+)\s*;"
)
SCALARS = {"string", "bytes", "bool", "int32", "int64", "uint32", "uint64", "double", "float", "sint32", "sint64", "fixed32", "fixed64", "sfixed32", "sfixed64"}


def git(repo, *args):
    return subprocess.run(["git", "-C", repo, *args], check=True, capture_output=True, text=True).stdout


def files(repo):
    return git(repo, "ls-tree", "-r", "--name-only", "HEAD").split("\n")


def show(repo, path):
    return git(repo, "show", f"HEAD:{path}")


def parse_proto(text):
    package = re.search(r"^package\s+([\w.]+)\s*;", text, re.M).group(1)
    messages = {}
    current = None
    depth = 0
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped.startswith("//"):
            continue
        m = re.match(r"^message\s+(\w+)\s*\{", stripped)
        if m and depth == 0:
            current = m.group(1)
            messages[current] = []
            depth = 1
            continue
        if current is None:
            continue
        depth += stripped.count("{") - stripped.count("}")
        if depth <= 0:
            current = None
            depth = 0
            continue
        f = FIELD.match(line)
        if not f:
            continue
        if f.group(1):
            label, typ, name, num = f.group(1), f.group(2), f.group(3), int(f.group(4))
            messages[current].append({"n": num, "name": name, "type": typ, "rep": label == "repeated"})
        else:
            messages[current].append(
                {"n": int(f.group(8)), "name": f.group(7), "type": f.group(6), "key": f.group(5), "map": True}
            )
    return package, messages


def qualify(typ, package):
    if typ in SCALARS:
        return typ
    if typ.startswith("."):
        return typ[1:]
    return f"{package}.{typ}"


STRUCT = re.compile(r"^type\s+(\w+)\s+struct\s*\{")
ALIAS = re.compile(r"^type\s+(\w+)\s+(\[\]|map\[)")


def parse_go(texts):
    """(struct name -> {proto name -> (json name, omitempty, pointer, inline)}, named slice types)."""
    structs = {}
    slices = set()
    for text in texts:
        current = None
        for line in text.split("\n"):
            s = line.strip()
            m = STRUCT.match(s)
            if m:
                current = m.group(1)
                structs.setdefault(current, {})
                continue
            a = ALIAS.match(s)
            if a and a.group(2) == "[]":
                slices.add(a.group(1))
            if current is None:
                continue
            if s == "}":
                current = None
                continue
            if "protobuf:\"" not in s or "`" not in s:
                continue
            decl, tag = s.split("`", 1)
            tokens = decl.split()
            if not tokens:
                continue
            gotype = tokens[-1]
            pm = re.search(r'protobuf:"([^"]*)"', tag)
            jm = re.search(r'json:"([^"]*)"', tag)
            pname = None
            for part in pm.group(1).split(","):
                if part.startswith("name="):
                    pname = part[5:]
            if pname is None and len(tokens) == 1:
                # An embedded struct's protobuf tag may leave its name out: it is the type's.
                base = gotype.lstrip("*").rsplit(".", 1)[-1]
                pname = base[0].lower() + base[1:]
            if pname is None:
                continue
            jparts = (jm.group(1) if jm else "").split(",")
            structs[current][pname] = {
                "json": jparts[0],
                "omitempty": "omitempty" in jparts[1:],
                # An embedded struct without a JSON name (`json:""`, `json:",inline"`) is
                # flattened into its parent, as Go's encoding/json does.
                "inline": "inline" in jparts[1:] or (len(tokens) == 1 and jparts[0] == ""),
                "pointer": gotype.startswith("*"),
            }
    return structs, slices


def group_of(repo, directory):
    path = f"{directory}/register.go"
    try:
        text = show(repo, path)
    except subprocess.CalledProcessError:
        return None
    m = re.search(r'GroupName\s*=\s*"([^"]*)"', text)
    return m.group(1) if m else None


def main():
    repos = sys.argv[1:5]
    if len(repos) != 4:
        sys.exit(__doc__)
    out_messages = {}
    kinds = {}
    sources = {}
    unmatched = []
    for repo in repos:
        head = git(repo, "rev-parse", "HEAD").strip()
        sources[repo.rstrip("/").split("/")[-2] if repo.endswith("/repo") else repo] = head
        all_files = files(repo)
        for proto in [f for f in all_files if f.endswith("generated.proto")]:
            directory = proto.rsplit("/", 1)[0]
            package, messages = parse_proto(show(repo, proto))
            go_texts = [
                show(repo, f)
                for f in all_files
                if f.startswith(directory + "/")
                and f.count("/") == directory.count("/") + 1
                and f.endswith(".go")
                and not f.endswith("_test.go")
                and "generated" not in f.rsplit("/", 1)[1]
                and "zz_" not in f
            ]
            structs, slices = parse_go(go_texts)
            group = group_of(repo, directory)
            version = directory.rsplit("/", 1)[1]
            for name, fields in messages.items():
                go = structs.get(name, {})
                out = []
                for f in fields:
                    g = go.get(f["name"], {})
                    flags = 0
                    if f.get("rep"):
                        flags |= 1
                    if f.get("map"):
                        flags |= 2
                    if g.get("pointer"):
                        flags |= 4
                    if g.get("omitempty"):
                        flags |= 8
                    if g.get("inline"):
                        flags |= 16
                    if not g:
                        # Not found in the Go types: keep zero values (the safe side).
                        flags |= 4
                        unmatched.append(f"{package}.{name}.{f['name']}")
                    json_name = g.get("json") or f["name"]
                    entry = [f["n"], json_name, qualify(f["type"], package), flags]
                    if f.get("map"):
                        entry.append(qualify(f["key"], package))
                    out.append(entry)
                full = f"{package}.{name}"
                # A Go named slice (`type ExtraValue []string`) is a message with one repeated
                # field `items` in protobuf, and a plain JSON array.
                if name in slices and len(fields) == 1 and fields[0].get("rep") and fields[0]["name"] == "items":
                    out_messages[full] = {"list": qualify(fields[0]["type"], package)}
                    continue
                out_messages[full] = {"fields": out}
                has_meta = any(
                    f["name"] == "metadata" and qualify(f["type"], package).endswith("meta.v1.ObjectMeta")
                    for f in fields
                )
                if group is not None and has_meta:
                    api_version = f"{group}/{version}" if group else version
                    kinds[f"{api_version} {name}"] = full
    json.dump(
        {"sources": sources, "kinds": kinds, "messages": out_messages},
        sys.stdout,
        separators=(",", ":"),
        sort_keys=True,
    )
    sys.stdout.write("\n")
    print(f"{len(kinds)} kinds, {len(out_messages)} messages; {len(unmatched)} fields without a Go field (zero values kept):", file=sys.stderr)
    for u in unmatched:
        print(f"  {u}", file=sys.stderr)


if __name__ == "__main__":
    main()
