#!/usr/bin/env bash
# Starts a dnsmasq on 127.0.0.1 with the test's records, runs a test binary
# against it (its argument is the DNS port), and stops it.
# Usage: test_resolver.sh TEST-BINARY
set -euo pipefail
bin=$1
dir=$(mktemp -d)
trap 'kill "$(cat "$dir/pid" 2>/dev/null)" 2>/dev/null || true; rm -rf "$dir"' EXIT

write_conf() { # write_conf PORT
    cat >"$dir/dnsmasq.conf" <<CONF
port=$1
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
}

# The port can still be taken between the check and dnsmasq's bind: try a few.
started=
for _ in 1 2 3 4 5 6 7 8 9 10; do
    # A port the kernel says is free for both UDP and TCP (dnsmasq binds both).
    port=$(/usr/bin/python3 -c '
import socket
while True:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", 0))
    t = socket.socket()
    try:
        t.bind(("127.0.0.1", u.getsockname()[1]))
        print(u.getsockname()[1])
        break
    except OSError:
        pass
')
    write_conf "$port"
    rm -f "$dir/pid"
    if dnsmasq --conf-file="$dir/dnsmasq.conf" --pid-file="$dir/pid" --user="$(id -un)" \
        2>"$dir/err"; then
        for _ in $(seq 50); do [ -s "$dir/pid" ] && break; sleep 0.05; done
        started=1
        break
    fi
done
if [ -z "$started" ]; then
    cat "$dir/err" >&2
    echo "dnsmasq would not start on any of 10 ports" >&2
    exit 1
fi
"$bin" "$port"
