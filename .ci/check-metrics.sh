#!/usr/bin/env bash
# Starts `serve --dev`, posts one event, scrapes /metrics and checks it with
# promtool. Usage: check-metrics.sh BINARY
set -euo pipefail
bin=$1
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http=127.0.0.1:$(free_port); admin=127.0.0.1:$(free_port)
log=$(mktemp)
metrics=$(mktemp)
work=$(mktemp -d) # the default spool.dir (data/spool) goes here, not into the checkout
PRESENCE_BRIDGE__HTTP__LISTEN=$http PRESENCE_BRIDGE__ADMIN__LISTEN=$admin PRESENCE_BRIDGE__SPOOL__DIR=$work/spool "$bin" serve --dev >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$log" "$metrics" "$work"' EXIT
for _ in $(seq 1 100); do
  curl -fsS "http://$admin/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -fsS "http://$admin/readyz" >/dev/null || { cat "$log"; echo "serve --dev never became ready"; exit 1; }
curl -fsS -X POST "http://$http/webhooks/zapi/presence" -H 'Content-Type: application/json' \
  -d '{"type":"PresenceChatCallback","phone":"5544999999999","status":"COMPOSING","lastSeen":null,"instanceId":"instance.id"}'
echo
curl -fsS "http://$admin/metrics" >"$metrics"
promtool check metrics <"$metrics"
grep -q '^presence_bridge_events_accepted_total{status="COMPOSING"} 1$' "$metrics" || { echo "accepted counter did not move"; exit 1; }
kill -TERM $pid
wait $pid
echo "metrics check passed: $(grep -c '^presence_bridge_' "$metrics") presence_bridge samples, promtool clean, exit 0 on SIGTERM"
