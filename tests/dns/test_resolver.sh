#!/usr/bin/env bash
# Starts a dnsmasq on 127.0.0.1 with the test's records, runs test_resolver
# against it, and stops it. Usage: test_resolver.sh TEST-BINARY
set -euo pipefail
bin=$1
dir=$(mktemp -d)
trap 'kill "$(cat "$dir/pid" 2>/dev/null)" 2>/dev/null || true; rm -rf "$dir"' EXIT
port=$(( 20000 + RANDOM % 20000 ))
cat >"$dir/dnsmasq.conf" <<CONF
port=$port
listen-address=127.0.0.1
bind-interfaces
no-resolv
no-hosts
local-ttl=300
local=/example/
host-record=xmpp.fabrikam.example,127.0.0.1
host-record=plain.example,127.0.0.1
srv-host=_xmpp-server._tcp.fabrikam.example,xmpp.fabrikam.example,5269,0,10
srv-host=_xmpp-server._tcp.multi.example,a.multi.example,5269,10,60
srv-host=_xmpp-server._tcp.multi.example,b.multi.example,5270,10,40
srv-host=_xmpp-server._tcp.multi.example,c.multi.example,5271,20,0
srv-host=_xmpps-server._tcp.multi.example,d.multi.example,5223,5,0
srv-host=_xmpp-server._tcp.closed.example
CONF
dnsmasq --conf-file="$dir/dnsmasq.conf" --pid-file="$dir/pid" --user="$(id -un)"
for _ in $(seq 50); do [ -s "$dir/pid" ] && break; sleep 0.05; done
"$bin" "$port"
