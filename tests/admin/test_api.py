#!/usr/bin/python3
"""The admin API on a real `xfed --config` (spec §2-§5, §10; issue 8).

Run: python3 test_api.py --xfed PATH --xfedctl PATH --status-server PATH [unittest options]

Stdlib only. Each test starts xfed with `[admin] listen = 127.0.0.1:0` (the URL
is read from the log line), a temporary store and token file. Covered: the
token (generated 0600, read back, refused files), every status code of the API
(200 201 400 401 403 404 405 409 413 415 422), malformed and oversized bodies,
the same validation and JSON shape as xfedctl, concurrent edits from threads
and from xfedctl, /api/status, and the daemon picking up an API change within
2 s (its log line and /metrics). Refused requests are checked to leave the
store's content (a full SQL dump) unchanged.
"""
import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from xfedproc import XfedProcess  # noqa: E402

ARGS = None
BODY_MAX = 65536

R, O, N = "required", "optional", "not-supported"
MSG_TLS_OPTIONAL = ("SASL requires TLS. Allowing TLS to be optional may result in "
                    "failed session negotiations.")
MSG_SASL_NEEDS_TLS = "SASL requires TLS: SASL negotiation is required or optional but TLS"
MSG_NO_METHOD = "SASL or Dialback must be enabled"
# row: (tls, sasl, dialback, commit class, message) from spec §4
MATRIX = {
    1: (R, R, True, "warning", "Dialback will not operate if both SASL and TLS are required."),
    2: (R, R, False, "ok", None),
    3: (O, R, True, "warning", MSG_TLS_OPTIONAL),
    4: (O, R, False, "warning", MSG_TLS_OPTIONAL),
    5: (N, R, True, "refused", MSG_SASL_NEEDS_TLS),
    6: (N, R, False, "refused", MSG_SASL_NEEDS_TLS),
    7: (R, O, True, "ok", None),
    8: (R, O, False, "ok", None),
    9: (O, O, True, "warning", MSG_TLS_OPTIONAL),
    10: (O, O, False, "warning", MSG_TLS_OPTIONAL),
    11: (N, O, True, "refused", MSG_SASL_NEEDS_TLS),
    12: (N, O, False, "refused", MSG_SASL_NEEDS_TLS),
    13: (R, N, True, "info", "Configuration allows for TLS Dialback."),
    14: (R, N, False, "refused", MSG_NO_METHOD),
    15: (O, N, True, "info",
         "TCP or TLS Dialback will be accepted, based on the other end's negotiation choices."),
    16: (O, N, False, "refused", MSG_NO_METHOD),
    17: (N, N, True, "info", "TCP Dialback is the only negotiation method available."),
    18: (N, N, False, "refused", MSG_NO_METHOD),
}
CLEAN_ENV = {k: v for k, v in os.environ.items() if k not in ("XFED_CONFIG", "XFED_STORE")}


def dump_store(path):
    """The store's content as SQL text: refused requests must not change it."""
    con = sqlite3.connect(path, timeout=30)
    try:
        return "\n".join(con.iterdump())
    finally:
        con.close()


def make_cert(d, name):
    key, crt = os.path.join(d, name + ".key"), os.path.join(d, name + ".crt")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "30", "-subj", "/CN=" + name,
                    "-addext", "subjectAltName=DNS:" + name, "-keyout", key, "-out", crt],
                   check=True, capture_output=True, timeout=60)
    return crt, key


class Daemon(XfedProcess):
    """xfed --config FILE; its log lines are collected as it runs."""

    def __init__(self, config):
        super().__init__([ARGS.xfed, "--config", config])
        self.port = None


class Response:
    def __init__(self, status, headers, raw):
        self.status, self.headers, self.raw = status, headers, raw

    def json(self):
        return json.loads(self.raw)

    def __repr__(self):
        return "HTTP %d %r" % (self.status, self.raw[:600])


class ApiCase(unittest.TestCase):
    maxDiff = None
    token_file_line = True  # write `token_file` into the config

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="xfed-api-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        crt, key = make_cert(self.tmp, "contoso.example")
        self.store = os.path.join(self.tmp, "xfed.db")
        self.token_file = os.path.join(self.tmp, "admin.token")
        self.config = os.path.join(self.tmp, "xfed.conf")
        with open(self.config, "w") as f:
            f.write("[xfed]\nthreads = 1\nstore = %s\n[admin]\nlisten = 127.0.0.1:0\n" % self.store)
            if self.token_file_line:
                f.write("token_file = %s\n" % self.token_file)
            f.write("[local contoso.example]\ncert = %s\nkey = %s\n" % (crt, key))
        self.daemons = []
        self.token = None

    def tearDown(self):
        for d in self.daemons:
            self.assertEqual(d.stop(), 0, d.log())
            # Spec §10: no secret in the log, ever.
            if self.token:
                self.assertNotIn(self.token, d.log())
            self.assertNotIn("pool passphrase 42", d.log())

    def start(self, expect_ok=True):
        d = Daemon(self.config)
        self.daemons.append(d)
        i = d.wait_for("admin listener: http://", 10)
        if not expect_ok:
            return d
        self.assertIsNotNone(i, d.log())
        m = re.search(r"admin listener: http://127\.0\.0\.1:(\d+)/", d.lines[i])
        self.assertIsNotNone(m, d.lines[i])
        d.port = int(m.group(1))
        self.assertIsNotNone(d.wait_for("xfed started", 10), d.log())
        self.daemon = d
        if self.token_file_line:
            with open(self.token_file) as f:
                self.token = f.read().strip()
        return d

    # One HTTP request on its own connection.
    def req(self, method, path, body=None, token="default", ctype="application/json",
            raw=None, headers=None, port=None):
        h = dict(headers or {})
        if token == "default":
            token = self.token
        if token is not None:
            h["Authorization"] = "Bearer " + token
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
        if data is not None and ctype is not None:
            h["Content-Type"] = ctype
        c = http.client.HTTPConnection("127.0.0.1", port or self.daemon.port, timeout=30)
        try:
            c.request(method, path, body=data, headers=h)
            r = c.getresponse()
            return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        finally:
            c.close()

    def ok(self, method, path, body=None, status=200):
        r = self.req(method, path, body)
        self.assertEqual(r.status, status, r)
        self.assertTrue(r.headers["content-type"].startswith("application/json"), r.headers)
        return r.json()

    def ctl(self, *args):
        p = subprocess.run([ARGS.xfedctl, "--config", self.config, *args], capture_output=True,
                           text=True, env=CLEAN_ENV, timeout=60)
        return p

    def ctl_json(self, *args):
        p = self.ctl(*args, "--json")
        self.assertEqual(p.returncode, 0, p.stderr)
        return json.loads(p.stdout)

    def assertError(self, r, status, code=None, needle=None):
        self.assertEqual(r.status, status, r)
        self.assertTrue(r.headers["content-type"].startswith("application/json"), r.headers)
        j = r.json()
        if code:
            self.assertEqual(j["error"], code, j)
        if needle:
            self.assertIn(needle, json.dumps(j), j)
        return j

    def assertUnchanged(self, before, what):
        self.assertEqual(dump_store(self.store), before, "the store changed: " + what)


# ---- the token -------------------------------------------------------------


class TokenTest(ApiCase):
    def test_generated_0600_and_kept(self):
        self.assertFalse(os.path.exists(self.token_file))
        d = self.start()
        st = os.stat(self.token_file)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
        self.assertRegex(self.token, r"^[0-9a-f]{64}$")  # 32 random bytes, hex
        self.assertIn("generated a token into %s (mode 0600)" % self.token_file, d.log())
        self.assertEqual(self.req("GET", "/api/partners").status, 200)
        # A restart reads the same file rather than replacing it.
        self.assertEqual(d.stop(), 0)
        first = self.token
        self.start()
        self.assertEqual(self.token, first)
        self.assertNotIn("generated a token", self.daemon.log())
        self.assertEqual(self.req("GET", "/api/partners").status, 200)

    def test_two_generated_tokens_differ(self):
        self.start()
        first = self.token
        self.daemon.stop()
        os.unlink(self.token_file)
        self.start()
        self.assertNotEqual(self.token, first)

    def test_operator_token_used_and_loose_mode_warned(self):
        with open(self.token_file, "w") as f:
            f.write("operator-chosen-token-0123456789\n")
        os.chmod(self.token_file, 0o644)
        d = self.start()
        self.assertEqual(self.token, "operator-chosen-token-0123456789")
        self.assertIn("can be read or written by others (mode 0644)", d.log())
        self.assertEqual(self.req("GET", "/api/gateway").status, 200)
        with open(self.token_file) as f:
            self.assertEqual(f.read(), "operator-chosen-token-0123456789\n")

    def test_unusable_token_file_stops_the_start(self):
        cases = [("short\n", "the token must be 16 to 256 characters"),
                 ("x" * 300, "the token must be 16 to 256 characters"),
                 ("has a space inside it ok\n", "printable ASCII without spaces")]
        for content, needle in cases:
            with open(self.token_file, "w") as f:
                f.write(content)
            os.chmod(self.token_file, 0o600)
            p = subprocess.run([ARGS.xfed, "--config", self.config], capture_output=True,
                               text=True, timeout=20)
            self.assertEqual(p.returncode, 1, p.stderr)
            self.assertIn(needle, p.stderr)
            self.assertNotIn(content.strip(), p.stderr)  # never the token itself
        os.unlink(self.token_file)
        os.mkdir(self.token_file)
        p = subprocess.run([ARGS.xfed, "--config", self.config], capture_output=True, text=True,
                           timeout=20)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("not a regular file", p.stderr)
        os.rmdir(self.token_file)
        # A folder that does not exist: the token cannot be created.
        with open(self.config) as f:
            text = f.read().replace(self.token_file, os.path.join(self.tmp, "no", "admin.token"))
        with open(self.config, "w") as f:
            f.write(text)
        p = subprocess.run([ARGS.xfed, "--config", self.config], capture_output=True, text=True,
                           timeout=20)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("cannot create it", p.stderr)

    def test_auth(self):
        self.start()
        t = self.token
        for path in ("/api/partners", "/api/partners/x.example", "/api/gateway", "/api/status",
                     "/api/matrix"):
            r = self.req("GET", path, token=None)
            self.assertError(r, 401, "unauthorized", "Authorization: Bearer")
            self.assertEqual(r.headers["www-authenticate"], 'Bearer realm="xfed admin"')
        for bad in ("", t[:-1], t + "0", t[:-1] + ("0" if t[-1] != "0" else "1"), "x" * 64,
                    "x" * 300):
            self.assertError(self.req("GET", "/api/partners", token=bad), 401, "unauthorized")
        for header in ("Basic " + t, t, "Bearer", "Token " + t):
            r = self.req("GET", "/api/partners", token=None, headers={"Authorization": header})
            self.assertError(r, 401, "unauthorized")
        r = self.req("GET", "/api/partners", token=None, headers={"Authorization": "bearer  " + t})
        self.assertEqual(r.status, 200, r)
        # Writes need it too, and an unauthorized write changes nothing.
        before = dump_store(self.store)
        r = self.req("POST", "/api/partners", {"domain": "fabrikam.example"}, token="wrong" * 8)
        self.assertError(r, 401)
        r = self.req("PUT", "/api/gateway", {"keepalive_interval": 100}, token=None)
        self.assertError(r, 401)
        self.assertUnchanged(before, "unauthorized writes")

    def test_token_free_paths(self):
        self.start()
        r = self.req("GET", "/metrics", token=None)
        self.assertEqual(r.status, 200)
        self.assertIn(b"xfed_partners_active", r.raw)
        self.assertEqual(self.req("GET", "/healthz", token=None).raw, b"ok\n")
        r = self.req("GET", "/", token=None)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.headers["content-type"], "text/html; charset=utf-8")
        self.assertIn("default-src 'self'", r.headers["content-security-policy"])
        self.assertEqual(r.headers["x-content-type-options"], "nosniff")
        self.assertIn(b"XMPP Federated Partners", r.raw)


class DisabledTest(ApiCase):
    token_file_line = False

    def test_no_token_file_disables_the_api(self):
        d = self.start()
        self.assertIn("admin API: disabled", d.log())
        for method, path in (("GET", "/api/partners"), ("GET", "/api/status"),
                             ("PUT", "/api/gateway")):
            r = self.req(method, path, {} if method == "PUT" else None, token="a" * 64)
            self.assertError(r, 403, "disabled", "token_file")
        self.assertEqual(self.req("GET", "/metrics", token=None).status, 200)
        self.assertEqual(self.req("GET", "/healthz", token=None).status, 200)
        self.assertEqual(self.req("GET", "/", token=None).status, 200)
        self.assertEqual(self.req("GET", "/panel.js", token=None).status, 200)


# ---- the page ----------------------------------------------------------------


class PageTest(ApiCase):
    def test_assets_are_self_contained(self):
        self.start()
        page = self.req("GET", "/", token=None)
        html = page.raw.decode()
        refs = re.findall(r'(?:src|href)="([^"]*)"', html)
        self.assertTrue(refs)
        for ref in refs:
            self.assertTrue(ref.startswith("/") or ref.startswith("#"), ref)
            if ref.startswith("/") and not ref.startswith("//"):
                r = self.req("GET", ref, token=None)
                self.assertEqual(r.status, 200, ref)
                self.assertEqual(r.headers["x-content-type-options"], "nosniff")
                self.assertIn("default-src 'self'", r.headers["content-security-policy"])
        self.assertNotIn("<script>", html)  # no inline script: CSP forbids it
        self.assertNotRegex(html, r"\son[a-z]+\s*=")  # no inline event handlers either
        js = self.req("GET", "/panel.js", token=None)
        self.assertEqual(js.headers["content-type"], "text/javascript; charset=utf-8")
        css = self.req("GET", "/panel.css", token=None)
        self.assertEqual(css.headers["content-type"], "text/css; charset=utf-8")
        for body in (js.raw, css.raw):
            self.assertNotRegex(body, rb"https?://")
            self.assertNotIn(b"url(", body)
        self.assertEqual(self.req("HEAD", "/", token=None).status, 200)
        r = self.req("POST", "/", raw=b"x", ctype="text/plain", token=None)
        self.assertEqual(r.status, 405)
        self.assertEqual(r.headers["allow"], "GET, HEAD")


# ---- partners: every status code ------------------------------------------------


class PartnerTest(ApiCase):
    def setUp(self):
        super().setUp()
        self.start()

    def test_crud_and_xfedctl_shape(self):
        self.assertEqual(self.ok("GET", "/api/partners"), [])
        body = {"domain": "Fabrikam.Example", "description": "Fabrikam, Inc.",
                "additional_domains": ["fabrikam.net", "MUC.fabrikam.example"],
                "partner_type": "federated"}
        r = self.req("POST", "/api/partners", body)
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.headers["location"], "/api/partners/fabrikam.example")
        j = r.json()
        self.assertEqual(j["matrix_row"], 7)
        self.assertEqual((j["warnings"], j["info"]), ([], []))
        self.assertNotIn("messages", j)
        # The JSON shape is xfedctl's: byte-for-byte the same object.
        self.assertEqual(j["partner"], self.ctl_json("partner", "get", "fabrikam.example"))
        self.assertEqual(j["partner"]["additional_domains"],
                         ["fabrikam.net", "muc.fabrikam.example"])
        got = self.ok("GET", "/api/partners/FABRIKAM.example")
        self.assertEqual(got, j["partner"])
        self.assertEqual(self.ok("GET", "/api/partners"), self.ctl_json("partner", "get"))

        # PUT changes what the body names, and nothing else.
        j = self.ok("PUT", "/api/partners/fabrikam.example", {"description": "changed"})
        want = dict(got, description="changed")
        self.assertEqual(j["partner"], want)
        self.assertEqual(self.ctl_json("partner", "get", "fabrikam.example"), want)
        j = self.ok("PUT", "/api/partners/fabrikam.example",
                    {"add_domains": ["fabrikam.org"], "remove_domains": ["fabrikam.net"],
                     "connection_limit": 5, "keepalive": False, "proxy_fqdn": "edge.fabrikam.net:5269"})
        self.assertEqual(j["partner"]["additional_domains"], ["muc.fabrikam.example", "fabrikam.org"])
        self.assertEqual((j["partner"]["connection_limit"], j["partner"]["keepalive"]), (5, False))
        self.assertEqual(j["partner"]["description"], "changed")
        # A GET reply sent back is a valid PUT (read-only fields are ignored).
        back = self.ok("GET", "/api/partners/fabrikam.example")
        self.assertEqual(self.ok("PUT", "/api/partners/fabrikam.example", back)["partner"], back)

        r = self.ok("DELETE", "/api/partners/fabrikam.example")
        self.assertEqual(r, {"domain": "fabrikam.example", "removed": True})
        self.assertEqual(self.ctl("partner", "get", "fabrikam.example").returncode, 1)
        self.assertError(self.req("GET", "/api/partners/fabrikam.example"), 404, "not_found")
        self.assertError(self.req("DELETE", "/api/partners/fabrikam.example"), 404, "not_found")
        self.assertError(self.req("PUT", "/api/partners/fabrikam.example", {"description": "x"}),
                         404, "not_found", "no partner 'fabrikam.example'")

    def test_not_found_names_the_owner(self):
        self.ok("POST", "/api/partners", {"domain": "fabrikam.example",
                                          "additional_domains": ["fabrikam.net"]}, 201)
        for method in ("GET", "DELETE"):
            self.assertError(self.req(method, "/api/partners/fabrikam.net"), 404, "not_found",
                             "additional domain of 'fabrikam.example'")
        self.assertError(self.req("GET", "/api/partners/bad_name!"), 404, "not_found")
        self.assertError(self.req("GET", "/api/partners/a.example/b"), 404, "not_found")
        self.assertError(self.req("GET", "/api/partners/" + "a" * 300), 404, "not_found")
        self.assertError(self.req("GET", "/api/nothing"), 404, "not_found")
        self.assertEqual(self.req("GET", "/nothing").status, 404)

    def test_conflict_409(self):
        self.ok("POST", "/api/partners", {"domain": "fabrikam.example", "description": "first"},
                201)
        before = dump_store(self.store)
        r = self.req("POST", "/api/partners", {"domain": "fabrikam.example",
                                               "description": "second"})
        self.assertError(r, 409, "exists", "already exists")
        self.assertUnchanged(before, "POST of an existing partner")

    def test_matrix_rows_and_refusals_422(self):
        """Every row through PUT: committed rows carry their warning or info,
        refused rows answer 422 with xfedctl's messages and save nothing."""
        self.ok("POST", "/api/partners", {"domain": "fabrikam.example"}, 201)
        self.ok("POST", "/api/partners", {"domain": "wingtip.example"}, 201)
        for row, (tls, sasl, db, cls, msg) in MATRIX.items():
            body = {"tls": tls, "sasl": sasl, "dialback": db}
            before = dump_store(self.store)
            r = self.req("PUT", "/api/partners/fabrikam.example", body)
            if cls == "refused":
                j = self.assertError(r, 422, "refused")
                self.assertEqual(j["matrix_row"], row)
                self.assertEqual(len(j["messages"]), 1, j)
                self.assertIn(msg, j["messages"][0])
                self.assertUnchanged(before, "refused row %d" % row)
                # xfedctl refuses the same change with the same words.
                p = self.ctl("partner", "set", "wingtip.example", "--tls", tls, "--sasl", sasl,
                             "--dialback", "true" if db else "false")
                self.assertEqual(p.returncode, 1)
                self.assertIn("xfedctl: refused: " + j["messages"][0], p.stderr)
                continue
            self.assertEqual(r.status, 200, r)
            j = r.json()
            self.assertEqual(j["matrix_row"], row)
            self.assertEqual(j["partner"]["matrix_row"], row)
            self.assertEqual(j["warnings"], [msg] if cls == "warning" else [], row)
            self.assertEqual(j["info"], [msg] if cls == "info" else [], row)
        # A new partner on a refused row is not created.
        before = dump_store(self.store)
        r = self.req("POST", "/api/partners", {"domain": "litware.example", "sasl": "required",
                                               "tls": "not-supported"})
        j = self.assertError(r, 422, "refused", MSG_SASL_NEEDS_TLS)
        self.assertEqual(j["matrix_row"], 5)
        self.assertUnchanged(before, "refused POST")
        self.assertError(self.req("GET", "/api/partners/litware.example"), 404)

    def test_other_refusals_422(self):
        self.ok("POST", "/api/partners", {"domain": "fabrikam.example",
                                          "additional_domains": ["fabrikam.net"]}, 201)
        cases = [
            ({"domain": "contoso.example"}, "local domain"),
            ({"domain": "bad_name!.example"}, "primary domain"),
            ({"domain": "x" * 260 + ".example"}, "longer than 253"),
            ({"domain": "wingtip.example", "additional_domains": ["fabrikam.net"]}, "fabrikam"),
            ({"domain": "wingtip.example", "description": "d" * 1025}, "description"),
            ({"domain": "wingtip.example", "connection_limit": 65536}, "connection limit"),
            ({"domain": "wingtip.example",
              "additional_domains": ["d%d.example" % i for i in range(65)]}, "at most 64"),
            ({"domain": "wingtip.example", "additional_domains": ["no spaces.example"]},
             "additional domain"),
        ]
        for body, needle in cases:
            before = dump_store(self.store)
            r = self.req("POST", "/api/partners", body)
            j = self.assertError(r, 422, "refused")
            self.assertIn(needle.lower(), " ".join(j["messages"]).lower(), (body, j))
            self.assertUnchanged(before, repr(body)[:100])
        before = dump_store(self.store)
        j = self.assertError(self.req("PUT", "/api/partners/fabrikam.example",
                                      {"remove_domains": ["nothere.example"]}), 422, "refused")
        self.assertIn("not an additional domain", j["messages"][0])
        self.assertUnchanged(before, "remove_domains of an unknown domain")

    def test_bad_requests_400(self):
        self.ok("POST", "/api/partners", {"domain": "fabrikam.example"}, 201)
        before = dump_store(self.store)
        raw_cases = [b"{", b"not json", b"[1, 2]", b'"text"', b"", b'{"domain": "a.example",}',
                     b'{"domain": "x.example", "domain": "y.example"}', b"\xff\xfe{}",
                     b'{"domain": "nul\\u0000.example"}']
        for raw in raw_cases:
            r = self.req("POST", "/api/partners", raw=raw)
            self.assertError(r, 400)
        body_cases = [
            {"description": "no domain"},
            {"domain": "w.example", "tls": "sometimes"},
            {"domain": "w.example", "sasl": 1},
            {"domain": "w.example", "dialback": "yes"},
            {"domain": "w.example", "keepalive": 1},
            {"domain": "w.example", "connection_limit": -1},
            {"domain": "w.example", "connection_limit": 1.5},
            {"domain": "w.example", "connection_limit": "10"},
            {"domain": "w.example", "partner_type": "friendly"},
            {"domain": "w.example", "additional_domains": "a.example,b.example"},
            {"domain": "w.example", "additional_domains": [1]},
            {"domain": "w.example", "colour": "blue"},
            {"domain": 7},
        ]
        for body in body_cases:
            j = self.assertError(self.req("POST", "/api/partners", body), 400, "bad_request")
            self.assertTrue(j["message"], j)
        for body in ({}, {"domain": "fabrikam.example"}, {"domain": "other.example", "tls": O},
                     {"matrix_row": 3, "methods": []}):
            self.assertError(self.req("PUT", "/api/partners/fabrikam.example", body), 400)
        self.assertError(self.req("PUT", "/api/gateway", {}), 400, "bad_request", "nothing")
        self.assertError(self.req("PUT", "/api/gateway", {"keepalive_interval": "60"}), 400)
        self.assertError(self.req("PUT", "/api/gateway", {"bogus": 1}), 400)
        self.assertUnchanged(before, "bad requests")
        # The cmdlet spellings parse, as for xfedctl.
        j = self.ok("PUT", "/api/partners/fabrikam.example",
                    {"tls": "Required", "sasl": "NotSupported", "partner_type": "PublicVerified"})
        self.assertEqual((j["partner"]["sasl"], j["partner"]["partner_type"]),
                         ("not-supported", "public-verified"))

    def test_content_type_415(self):
        before = dump_store(self.store)
        body = json.dumps({"domain": "fabrikam.example"}).encode()
        for ctype in (None, "text/plain", "application/x-www-form-urlencoded",
                      "application/jsonx", "multipart/form-data; boundary=x"):
            r = self.req("POST", "/api/partners", raw=body, ctype=ctype)
            self.assertError(r, 415, "unsupported_media_type")
        self.assertUnchanged(before, "wrong content types")
        r = self.req("POST", "/api/partners", raw=body, ctype="Application/JSON; charset=utf-8")
        self.assertEqual(r.status, 201, r)

    def test_body_size_413(self):
        self.ok("POST", "/api/partners", {"domain": "fabrikam.example"}, 201)
        before = dump_store(self.store)
        # Exactly the limit is read; one byte more is refused.
        doc = json.dumps({"description": "at the limit"}).encode()
        at_limit = doc[:-1] + b" " * (BODY_MAX - len(doc)) + b"}"
        self.assertEqual(len(at_limit), BODY_MAX)
        r = self.req("PUT", "/api/partners/fabrikam.example", raw=at_limit)
        self.assertEqual(r.status, 200, r)
        before = dump_store(self.store)
        over = doc[:-1] + b" " * (BODY_MAX + 1 - len(doc)) + b"}"
        for path in ("/api/partners/fabrikam.example", "/api/gateway"):
            r = self.req("PUT", path, raw=over)
            self.assertError(r, 413, "too_large", str(BODY_MAX))
        self.assertError(self.req("POST", "/api/partners", raw=over), 413)
        # Much larger: answered 413 without reading it all, or cut off; either
        # way nothing is saved and the listener keeps serving.
        huge = b"{" + b" " * (8 * 1024 * 1024) + b"}"
        try:
            r = self.req("PUT", "/api/partners/fabrikam.example", raw=huge)
            self.assertEqual(r.status, 413, r)
        except (ConnectionError, BrokenPipeError, socket.timeout) as e:
            print("8 MiB body: connection closed (%r)" % e, file=sys.stderr)
        # Chunked uploads are counted the same way.
        c = http.client.HTTPConnection("127.0.0.1", self.daemon.port, timeout=30)
        c.putrequest("PUT", "/api/partners/fabrikam.example")
        c.putheader("Authorization", "Bearer " + self.token)
        c.putheader("Content-Type", "application/json")
        c.putheader("Transfer-Encoding", "chunked")
        c.endheaders()
        chunk = b" " * 16384
        for _ in range(5):
            c.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        c.send(b"0\r\n\r\n")
        r = c.getresponse()
        self.assertEqual(r.status, 413)
        r.read()
        c.close()
        self.assertUnchanged(before, "oversized bodies")
        self.assertEqual(self.req("GET", "/healthz", token=None).status, 200)

    def test_method_not_allowed_405(self):
        cases = [("PATCH", "/api/partners/fabrikam.example", "GET, PUT, DELETE"),
                 ("POST", "/api/partners/fabrikam.example", "GET, PUT, DELETE"),
                 ("DELETE", "/api/partners", "GET, POST"),
                 ("PUT", "/api/partners", "GET, POST"),
                 ("POST", "/api/status", "GET"),
                 ("HEAD", "/api/status", "GET"),
                 ("DELETE", "/api/gateway", "GET, PUT"),
                 ("POST", "/metrics", "GET, HEAD")]
        for method, path, allow in cases:
            r = self.req(method, path)
            self.assertEqual(r.status, 405, (method, path, r))
            self.assertEqual(r.headers["allow"], allow, (method, path))

    def test_gateway(self):
        g = self.ok("GET", "/api/gateway")
        self.assertEqual(g, self.ctl_json("gateway", "get"))
        self.assertEqual(g["dialback_passphrase_set"], False)
        r = self.req("PUT", "/api/gateway", {"dialback_passphrase": "pool passphrase 42",
                                             "keepalive_interval": 120,
                                             "log_message_bodies": False})
        self.assertEqual(r.status, 200, r)
        self.assertNotIn(b"pool passphrase 42", r.raw)
        j = r.json()
        self.assertEqual(j["gateway"]["keepalive_interval"], 120)
        self.assertIs(j["gateway"]["dialback_passphrase_set"], True)
        self.assertEqual((j["warnings"], j["info"]), ([], []))
        g = self.ok("GET", "/api/gateway")
        self.assertEqual(g, self.ctl_json("gateway", "get"))
        self.assertNotIn("dialback_passphrase", g)
        con = sqlite3.connect(self.store)
        self.assertEqual(con.execute("SELECT dialback_passphrase FROM gateway").fetchone()[0],
                         "pool passphrase 42")
        con.close()
        # Out of range: refused with the range, nothing saved.
        before = dump_store(self.store)
        for body, needle in (({"keepalive_interval": 5}, "keepalive"),
                             ({"connection_limit": 0}, "connection"),
                             ({"dialback_passphrase": "p" * 1025}, "passphrase")):
            j = self.assertError(self.req("PUT", "/api/gateway", body), 422, "refused")
            self.assertIn(needle, " ".join(j["messages"]).lower())
            self.assertNotIn("matrix_row", j)
        self.assertUnchanged(before, "refused gateway changes")
        # Clearing the passphrase.
        j = self.ok("PUT", "/api/gateway", {"dialback_passphrase": ""})
        self.assertIs(j["gateway"]["dialback_passphrase_set"], False)

    def test_matrix_endpoint(self):
        rows = self.ok("GET", "/api/matrix")
        self.assertEqual([r["row"] for r in rows], list(range(1, 19)))
        for r in rows:
            tls, sasl, db, cls, msg = MATRIX[r["row"]]
            self.assertEqual((r["tls"], r["sasl"], r["dialback"], r["commit"]),
                             (tls, sasl, db, cls))
            if msg:
                self.assertIn(msg, r["message"])
            else:
                self.assertIsNone(r["message"])
            self.assertEqual(r["methods"] == [], cls == "refused")


# ---- the daemon picks API changes up ---------------------------------------------


def metric(text, name):
    m = re.search(r"^%s (\d+)$" % re.escape(name), text, re.M)
    return int(m.group(1)) if m else None


class LiveTest(ApiCase):
    def test_changes_reach_the_daemon_within_2s(self):
        d = self.start()
        for n, domain in enumerate(["fabrikam.example", "wingtip.example"], start=1):
            mark = d.count()
            t0 = time.monotonic()
            self.ok("POST", "/api/partners", {"domain": domain}, 201)
            self.assertIsNotNone(d.wait_for("partners: %d active, 0 skipped" % n, 2.0, mark),
                                 d.log())
            seen = None
            while time.monotonic() - t0 < 2.0:
                seen = metric(self.req("GET", "/metrics", token=None).raw.decode(),
                              "xfed_partners_active")
                if seen == n:
                    break
                time.sleep(0.05)
            self.assertEqual(seen, n)
            self.assertLess(time.monotonic() - t0, 2.0)
            st = self.ok("GET", "/api/status")
            self.assertEqual(st["partners_active"], n)
            self.assertIn(domain, [p["domain"] for p in st["partners"]])
        # A removal too.
        mark = d.count()
        self.ok("DELETE", "/api/partners/fabrikam.example")
        self.assertIsNotNone(d.wait_for("partners: 1 active, 0 skipped", 2.0, mark), d.log())
        self.assertIn("admin API: partner fabrikam.example removed", d.log())

    def test_status_follows_the_snapshot(self):
        """The s2s layer does not exist yet: streams are 0 and the rest null,
        never invented. A partner the matrix refuses (written by hand) is not
        in the live table and counts as skipped."""
        d = self.start()
        self.ok("POST", "/api/partners", {"domain": "fabrikam.example"}, 201)
        self.ok("POST", "/api/partners", {"domain": "wingtip.example", "sasl": N}, 201)
        mark = d.count()
        con = sqlite3.connect(self.store, timeout=30)
        con.execute("UPDATE partners SET tls='not-supported', sasl='required' "
                    "WHERE domain='wingtip.example'")
        con.commit()
        con.close()
        self.assertIsNotNone(d.wait_for("partners: 1 active, 1 skipped", 2.0, mark), d.log())
        st = self.ok("GET", "/api/status")
        self.assertEqual((st["partners_active"], st["partners_skipped"]), (1, 1))
        self.assertGreaterEqual(st["snapshot_version"], 2)
        self.assertEqual(st["partners"], [{
            "domain": "fabrikam.example", "matrix_row": 7,
            "methods_allowed": ["sasl_tls", "dialback_tls"], "streams_in": 0, "streams_out": 0,
            "method": None, "last_success": None, "last_failure": None}])
        listed = {p["domain"]: p for p in self.ok("GET", "/api/partners")}
        self.assertEqual(listed["wingtip.example"]["matrix_row"], 5)

    def test_status_with_runtime_values(self):
        """What /api/status shows once the runtime writes the status table
        (xf_test_status_server fills it with known values)."""
        with open(self.token_file, "w") as f:
            f.write("status-test-token-0123456789\n")
        self.token = "status-test-token-0123456789"
        p = subprocess.Popen([ARGS.status_server, "--store", self.store, "--token-file",
                              self.token_file], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        try:
            line = p.stdout.readline()
            self.assertTrue(line.startswith("port "), p.stderr.read() if not line else line)
            port = int(line.split()[1])
            r = self.req("GET", "/api/status", port=port)
            self.assertEqual(r.status, 200, r)
            st = r.json()
            self.assertEqual((st["snapshot_version"], st["partners_active"],
                              st["partners_skipped"]), (42, 2, 3))
            fab, wing = st["partners"]
            self.assertEqual(fab, {
                "domain": "fabrikam.example", "matrix_row": 7,
                "methods_allowed": ["sasl_tls", "dialback_tls"], "streams_in": 2,
                "streams_out": 1, "method": "sasl_tls", "last_success": "2023-11-14T22:13:20Z",
                "last_failure": {"time": "2023-11-14T22:15:00Z",
                                 "reason": "remote-server-timeout: no answer from "
                                           "xmpp.fabrikam.example"}})
            self.assertEqual((wing["domain"], wing["matrix_row"], wing["streams_in"],
                              wing["method"], wing["last_failure"]),
                             ("wingtip.example", 13, 0, None, None))
            self.assertEqual(self.req("GET", "/api/status", port=port, token="nope" * 5).status,
                             401)
        finally:
            p.stdin.write("quit\n")
            p.stdin.close()
            self.assertEqual(p.wait(20), 0)
            p.stdout.close()
            p.stderr.close()


# ---- concurrency -------------------------------------------------------------------


class ConcurrencyTest(ApiCase):
    def setUp(self):
        super().setUp()
        self.start()

    def run_threads(self, n, fn):
        errors = []
        results = [None] * n

        def wrap(i):
            try:
                results[i] = fn(i)
            except Exception as e:  # reported below, with the thread's number
                errors.append((i, repr(e)))
        threads = [threading.Thread(target=wrap, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
            self.assertFalse(t.is_alive(), "a request thread hung")
        self.assertEqual(errors, [])
        return results

    def test_same_domain_created_once(self):
        for rnd in range(3):
            domain = "race%d.example" % rnd
            statuses = self.run_threads(8, lambda i: self.req(
                "POST", "/api/partners", {"domain": domain, "description": "thread %d" % i}).status)
            self.assertEqual(sorted(statuses), [201] + [409] * 7, statuses)

    def test_concurrent_edits_keep_the_store_consistent(self):
        """Threads add domains to one partner while others rewrite a pair of
        fields and readers check every reply: no lost update (every added
        domain is there at the end), no torn state (description and limit
        always come from the same write), and xfedctl writing at the same
        time is serialized with them."""
        self.ok("POST", "/api/partners", {"domain": "fabrikam.example",
                                          "description": "w0-0", "connection_limit": 0}, 201)
        stop = threading.Event()
        torn = []

        def adder(i):
            for k in range(4):
                d = "a%d-%d.fabrikam.example" % (i, k)
                self.assertEqual(self.req("PUT", "/api/partners/fabrikam.example",
                                          {"add_domains": [d]}).status, 200)

        def pair_writer(i):
            for k in range(8):
                self.assertEqual(self.req("PUT", "/api/partners/fabrikam.example", {
                    "description": "w%d-%d" % (i, k), "connection_limit": i * 100 + k}).status, 200)

        def reader():
            while not stop.is_set():
                p = self.ok("GET", "/api/partners/fabrikam.example")
                i, k = map(int, p["description"][1:].split("-"))
                if p["connection_limit"] != i * 100 + k:
                    torn.append(p)

        readers = [threading.Thread(target=reader) for _ in range(2)]
        for t in readers:
            t.start()
        ctl = [subprocess.Popen([ARGS.xfedctl, "--config", self.config, "partner", "set",
                                 "fabrikam.example", "--add-domain", "ctl%d.fabrikam.example" % i],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=CLEAN_ENV)
               for i in range(3)]
        self.run_threads(6, lambda i: adder(i) if i < 3 else pair_writer(i))
        for p in ctl:
            self.assertEqual(p.wait(60), 0, p.stderr.read())
            p.stderr.close()
        stop.set()
        for t in readers:
            t.join(60)
        self.assertEqual(torn, [])
        p = self.ok("GET", "/api/partners/fabrikam.example")
        want = {"a%d-%d.fabrikam.example" % (i, k) for i in range(3) for k in range(4)}
        want |= {"ctl%d.fabrikam.example" % i for i in range(3)}
        self.assertEqual(set(p["additional_domains"]), want)
        self.assertEqual(len(p["additional_domains"]), len(want))
        con = sqlite3.connect(self.store, timeout=30)
        try:
            self.assertEqual(con.execute("PRAGMA integrity_check").fetchall(), [("ok",)])
            names = {r[0] for r in con.execute(
                "SELECT name FROM partner_domains WHERE partner='fabrikam.example'")}
            self.assertEqual(names, want | {"fabrikam.example"})
        finally:
            con.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--xfed", required=True)
    ap.add_argument("--xfedctl", required=True)
    ap.add_argument("--status-server", required=True)
    ARGS, rest = ap.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)
