#!/usr/bin/env python3
"""Run every query of dashboards/lifeboat.json against a Prometheus and name the panels that fail.

Grafana variables are replaced as dashboards/README.md documents: $cluster and $plan -> `.*` (they
only ever appear as `=~"$cluster"`, checked here), $__range -> 1h, $__rate_interval -> 1m. Any
other variable is an error. Template variables written as label_values(SELECTOR, LABEL) are run
as `group by (LABEL) (SELECTOR)`.

  check_queries.py --list                  print the substituted queries, query nothing
  check_queries.py URL                     every query must return data (exit 1 naming the panels)
  check_queries.py --syntax-only URL       only errors fail; empty results are fine
  --dashboard PATH                         another dashboard file (default: next to this script)

Needs nothing but python3.
"""

import argparse
import json
import math
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request

DEFAULT_DASHBOARD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lifeboat.json")

SUBSTITUTIONS = {
    "cluster": ".*",
    "plan": ".*",
    "__range": "1h",
    "__rate_interval": "1m",
}
REGEX_ONLY = {"cluster", "plan"}
VARIABLE = re.compile(r"\$(?:\{(\w+)(?::[^}]*)?\}|(\w+))")
LABEL_VALUES = re.compile(r"^\s*label_values\((.*),\s*(\w+)\s*\)\s*$", re.S)


class QueryError(Exception):
    pass


def substitute(expr):
    """The expression with the documented values in place of the Grafana variables."""

    def one(match):
        name = match.group(1) or match.group(2)
        if name not in SUBSTITUTIONS:
            raise QueryError(f"uses ${name}, which is not one of "
                             f"{', '.join('$' + n for n in SUBSTITUTIONS)}")
        if name in REGEX_ONLY and not expr[: match.start()].endswith('=~"'):
            raise QueryError(f'uses ${name} other than as =~"${name}", so `.*` would not match')
        return SUBSTITUTIONS[name]

    return VARIABLE.sub(one, expr)


def walk(panels):
    for panel in panels:
        yield panel
        yield from walk(panel.get("panels", []))


def queries(dashboard):
    """(where, refId, substituted query or QueryError) for every panel target and variable."""
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        query = var.get("query")
        if isinstance(query, dict):
            query = query.get("query", "")
        where = f"variable ${var['name']}"
        match = LABEL_VALUES.match(query or "")
        if not match:
            yield where, "-", QueryError(f"cannot check variable query {query!r}")
            continue
        try:
            yield where, "-", f"group by ({match.group(2)}) ({substitute(match.group(1))})"
        except QueryError as e:
            yield where, "-", e
    for panel in walk(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            if "expr" not in target:
                continue
            where = f"panel {panel.get('id')} \"{panel.get('title', '')}\""
            try:
                yield where, target.get("refId", "?"), substitute(target["expr"])
            except QueryError as e:
                yield where, target.get("refId", "?"), e


def instant_query(base_url, query):
    url = base_url.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": query})
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            body = json.load(response)
    except urllib.error.HTTPError as e:
        try:
            body = json.load(e)
        except ValueError:
            raise QueryError(f"HTTP {e.code} from {url}") from None
    except (urllib.error.URLError, OSError) as e:
        sys.exit(f"check_queries.py: cannot reach Prometheus at {base_url}: {e}; "
                 "is it running, and is the URL like http://127.0.0.1:9090?")
    if body.get("status") != "success":
        raise QueryError(f"{body.get('errorType', 'error')}: {body.get('error', body)}")
    return body["data"]


def samples(data):
    """The sample values of an instant query result, as floats."""
    kind, result = data["resultType"], data["result"]
    if kind in ("scalar", "string"):
        return [float(result[1])] if kind == "scalar" else [0.0]
    if kind == "vector":
        return [float(r["value"][1]) for r in result]
    return [float(v[1]) for r in result for v in r.get("values", [])]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("url", nargs="?", help="Prometheus base URL, e.g. http://127.0.0.1:9090")
    parser.add_argument("--list", action="store_true", help="print the substituted queries and exit")
    parser.add_argument("--syntax-only", action="store_true", help="fail on errors only, not on empty results")
    parser.add_argument("--dashboard", default=DEFAULT_DASHBOARD, help="dashboard JSON file")
    args = parser.parse_args()

    with open(args.dashboard, encoding="utf-8") as f:
        dashboard = json.load(f)
    found = list(queries(dashboard))

    if args.list:
        bad = 0
        for where, ref, query in found:
            if isinstance(query, QueryError):
                bad += 1
                print(f"# {where} [{ref}]: ERROR {query}")
            else:
                print(f"# {where} [{ref}]\n{query}\n")
        return 1 if bad else 0

    if not args.url:
        parser.error("give a Prometheus base URL, or --list")

    failures, warnings = [], []
    for where, ref, query in found:
        if isinstance(query, QueryError):
            failures.append(f"{where} [{ref}]: {query}")
            continue
        try:
            values = samples(instant_query(args.url, query))
        except QueryError as e:
            failures.append(f"{where} [{ref}]: {e}\n    {query}")
            continue
        if not values:
            if not args.syntax_only:
                failures.append(f"{where} [{ref}]: no data\n    {query}")
        elif all(math.isnan(v) for v in values):
            warnings.append(f"{where} [{ref}]: only NaN (no runs in the window?)\n    {query}")

    for w in warnings:
        print(f"warning: {w}")
    checked = "syntax of" if args.syntax_only else "data from"
    if failures:
        print(f"check_queries.py: {len(failures)} of {len(found)} queries failed ({checked} {args.url}):")
        for f_ in failures:
            print(f"  {f_}")
        return 1
    print(f"check_queries.py: {len(found)} queries OK ({checked} {args.url}).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
