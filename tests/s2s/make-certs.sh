#!/usr/bin/env bash
# Makes a private CA and leaf certificates with every kind of XMPP identity,
# for the certificate-name tests. Usage: make-certs.sh DIR
set -euo pipefail
d=$1
mkdir -p "$d"
cd "$d"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj "/CN=xfed test CA" -keyout ca.key -out ca.crt 2>/dev/null
leaf() { # leaf NAME SUBJECT SAN-or-empty
    local name=$1 subj=$2 san=$3
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "$subj" \
        -keyout "$name.key" -out "$name.csr" 2>/dev/null
    : >"$name.ext"
    [ -n "$san" ] && echo "subjectAltName=$san" >>"$name.ext"
    echo "extendedKeyUsage=serverAuth" >>"$name.ext"
    openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
        -extfile "$name.ext" -outform DER -out "$name.der" 2>/dev/null
    openssl x509 -inform DER -in "$name.der" -out "$name.crt"
    rm -f "$name.csr" "$name.ext"
}
leaf dns "/CN=ignored.example" "DNS:fabrikam.example,DNS:conference.fabrikam.example"
leaf wild "/CN=ignored.example" "DNS:*.fabrikam.example"
leaf xmpp "/CN=ignored.example" "otherName:1.3.6.1.5.5.7.8.5;UTF8:wingtip.example"
leaf srv "/CN=ignored.example" "otherName:1.3.6.1.5.5.7.8.7;IA5:_xmpp-server.litware.example"
leaf mixed "/CN=ignored.example" "DNS:a.example,otherName:1.3.6.1.5.5.7.8.5;UTF8:b.example,otherName:1.3.6.1.5.5.7.8.7;IA5:_xmpp-server.c.example,email:x@d.example"
leaf cnonly "/CN=contoso.example" ""
leaf contoso "/CN=contoso.example" "DNS:contoso.example"
leaf northwind "/CN=northwind.example" "DNS:northwind.example"
leaf fabrikam "/CN=fabrikam.example" "DNS:fabrikam.example"
# A certificate from a CA nobody trusts.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj "/CN=rogue.example" -addext "subjectAltName=DNS:fabrikam.example" \
    -keyout rogue.key -out rogue.crt 2>/dev/null
