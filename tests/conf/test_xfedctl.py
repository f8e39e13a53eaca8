#!/usr/bin/python3
"""xfedctl and `xfed --check` through their command lines (spec §2-§5).

Run: python3 test_xfedctl.py --xfedctl PATH --xfed PATH [unittest options]

Stdlib only. Every test works on its own temporary store; refused commands are
checked to leave the store's content (a full SQL dump) unchanged.
"""
import argparse
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import unittest

XFEDCTL = None
XFED = None

# ---- the negotiation matrix of spec §4 --------------------------------------

R, O, N = "required", "optional", "not-supported"
MSG_TLS_OPTIONAL = ("SASL requires TLS. Allowing TLS to be optional may result in "
                    "failed session negotiations.")
MSG_DB_REQ = "Dialback will not operate if both SASL and TLS are required."
FIX_TLS = "Set TLS to required or optional, or SASL to not-supported"
FIX_NONE = "SASL or Dialback must be enabled"
SASL, DBTLS, DBTCP = "sasl_tls", "dialback_tls", "dialback_tcp"

# row: (tls, sasl, dialback, methods, commit class, message)
MATRIX = {
    1: (R, R, True, {SASL}, "warning", MSG_DB_REQ),
    2: (R, R, False, {SASL}, "ok", None),
    3: (O, R, True, {SASL, DBTLS, DBTCP}, "warning", MSG_TLS_OPTIONAL),
    4: (O, R, False, {SASL}, "warning", MSG_TLS_OPTIONAL),
    5: (N, R, True, set(), "refused", FIX_TLS),
    6: (N, R, False, set(), "refused", FIX_TLS),
    7: (R, O, True, {SASL, DBTLS}, "ok", None),
    8: (R, O, False, {SASL}, "ok", None),
    9: (O, O, True, {SASL, DBTLS, DBTCP}, "warning", MSG_TLS_OPTIONAL),
    10: (O, O, False, {SASL}, "warning", MSG_TLS_OPTIONAL),
    11: (N, O, True, set(), "refused", FIX_TLS),
    12: (N, O, False, set(), "refused", FIX_TLS),
    13: (R, N, True, {DBTLS}, "info", "Configuration allows for TLS Dialback."),
    14: (R, N, False, set(), "refused", FIX_NONE),
    15: (O, N, True, {DBTLS, DBTCP}, "info",
         "TCP or TLS Dialback will be accepted, based on the other end's negotiation choices."),
    16: (O, N, False, set(), "refused", FIX_NONE),
    17: (N, N, True, {DBTCP}, "info", "TCP Dialback is the only negotiation method available."),
    18: (N, N, False, set(), "refused", FIX_NONE),
}
COMMITTED_ROWS = [r for r, v in MATRIX.items() if v[4] != "refused"]
REFUSED_TRIPLES = {(v[0], v[1], v[2]) for v in MATRIX.values() if v[4] == "refused"}


def row_opts(row):
    tls, sasl, db = MATRIX[row][:3]
    return ["--tls", tls, "--sasl", sasl, "--dialback", "true" if db else "false"]


# Gateway settings of spec §5: option -> (json key, min, max, default)
GATEWAY_RANGES = {
    "--connection-limit": ("connection_limit", 1, 1000000, 1000),
    "--partner-connection-limit": ("partner_connection_limit", 1, 65535, 20),
    "--keepalive-interval": ("keepalive_interval", 10, 86400, 300),
    "--stream-establishment-timeout": ("stream_establishment_timeout", 5, 3600, 60),
    "--stream-inactivity-timeout": ("stream_inactivity_timeout", 10, 604800, 600),
}

# ---- helpers ------------------------------------------------------------------

CLEAN_ENV = {k: v for k, v in os.environ.items() if k not in ("XFED_CONFIG", "XFED_STORE")}


class Result:
    def __init__(self, argv, rc, out, err):
        self.argv, self.rc, self.out, self.err = argv, rc, out, err

    def __repr__(self):
        return "argv=%r rc=%r\nstdout=%s\nstderr=%s" % (self.argv, self.rc, self.out, self.err)

    def json(self):
        return json.loads(self.out)


def dump_store(path):
    """The store's whole content as SQL text (schema, rows, user_version)."""
    con = sqlite3.connect(path)
    try:
        lines = list(con.iterdump())
        lines.append("-- user_version %d" % con.execute("PRAGMA user_version").fetchone()[0])
    finally:
        con.close()
    return "\n".join(lines)


def integrity(path):
    con = sqlite3.connect(path)
    try:
        return [r[0] for r in con.execute("PRAGMA integrity_check")]
    finally:
        con.close()


def write_config(path, store, locals_=()):
    """locals_: (domain, cert, key) triples."""
    with open(path, "w") as f:
        f.write("[xfed]\nthreads = 1\nstore = %s\n" % store)
        for dom, cert, key in locals_:
            f.write("\n[local %s]\ncert = %s\nkey = %s\n" % (dom, cert, key))


class XfedctlCase(unittest.TestCase):
    maxDiff = None

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="xfedctl-test-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.store = os.path.join(self.tmp, "xfed.db")

    # Runs xfedctl against this test's store (or the given config).
    def ctl(self, *args, store=None, config=None, timeout=60):
        argv = [XFEDCTL]
        if config:
            argv += ["--config", config]
        else:
            argv += ["--store", store or self.store]
        argv += list(args)
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=CLEAN_ENV, timeout=timeout)
        return Result(argv, p.returncode,
                      p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace"))

    def ok(self, *args, **kw):
        r = self.ctl(*args, **kw)
        self.assertEqual(r.rc, 0, r)
        self.assertNotIn("refused", r.err, r)
        return r

    def init_store(self, store=None):
        """Creates the schema (the first open migrates) so dumps compare content only."""
        self.ok("gateway", "get", store=store)

    def get(self, domain, **kw):
        r = self.ok("partner", "get", domain, "--json", **kw)
        return r.json()

    def all_partners(self, **kw):
        r = self.ok("partner", "get", "--json", **kw)
        v = r.json()
        self.assertIsInstance(v, list, r)
        return v

    def dump(self, store=None):
        return dump_store(store or self.store)

    def assertRefused(self, args, *needles, rc=1, store=None, config=None):
        """Runs a command that must be refused with `rc` and change nothing."""
        before = self.dump(store)
        r = self.ctl(*args, store=store, config=config)
        self.assertEqual(r.rc, rc, r)
        for n in needles:
            self.assertIn(n, r.err, r)
        self.assertEqual(self.dump(store), before, "store changed by a refused command: %r" % r)
        return r


# ---- 1. the negotiation matrix ----------------------------------------------


class TestMatrix(XfedctlCase):

    def check_committed_output(self, r, row):
        cls, msg = MATRIX[row][4], MATRIX[row][5]
        self.assertEqual(r.rc, 0, r)
        self.assertNotIn("refused", r.err, r)
        if cls == "ok":
            self.assertNotIn("warning", r.err, r)
            self.assertNotIn("info:", r.err, r)
        elif cls == "warning":
            self.assertIn("xfedctl: warning: " + msg, r.err, r)
            self.assertNotIn("info:", r.err, r)
        elif cls == "info":
            self.assertIn("xfedctl: info: " + msg, r.err, r)
            self.assertNotIn("warning", r.err, r)

    def check_json_row(self, j, row):
        tls, sasl, db, methods = MATRIX[row][:4]
        self.assertEqual((j["tls"], j["sasl"], j["dialback"]), (tls, sasl, db), j)
        self.assertEqual(j["matrix_row"], row, j)
        self.assertEqual(set(j["methods"]), methods, j)
        self.assertEqual(len(j["methods"]), len(methods), j)

    def test_all_rows_via_new(self):
        self.init_store()
        for row in range(1, 19):
            with self.subTest(row=row):
                dom = "row%d.example" % row
                if MATRIX[row][4] == "refused":
                    r = self.assertRefused(["partner", "new", dom] + row_opts(row),
                                           "xfedctl: refused:", MATRIX[row][5])
                    if row in (5, 6, 11, 12):
                        self.assertIn("SASL requires TLS", r.err)
                    g = self.ctl("partner", "get", dom)
                    self.assertEqual(g.rc, 1, g)
                else:
                    r = self.ctl("partner", "new", dom, *row_opts(row))
                    self.check_committed_output(r, row)
                    self.check_json_row(self.get(dom), row)
        self.assertEqual(sorted(p["matrix_row"] for p in self.all_partners()),
                         sorted(COMMITTED_ROWS))

    def test_all_rows_via_set(self):
        self.init_store()
        for row in range(1, 19):
            with self.subTest(row=row):
                dom = "set%d.example" % row
                self.ok("partner", "new", dom)  # row 7
                if MATRIX[row][4] == "refused":
                    self.assertRefused(["partner", "set", dom] + row_opts(row),
                                       "xfedctl: refused:", MATRIX[row][5])
                    self.check_json_row(self.get(dom), 7)
                else:
                    r = self.ctl("partner", "set", dom, *row_opts(row))
                    self.check_committed_output(r, row)
                    self.check_json_row(self.get(dom), row)

    def test_set_from_every_row_to_every_refused_row(self):
        """The result of a set is validated as a whole, whatever row it started from."""
        self.init_store()
        for start in COMMITTED_ROWS:
            dom = "from%d.example" % start
            self.ok("partner", "new", dom, *row_opts(start))
            for row in MATRIX:
                if MATRIX[row][4] != "refused":
                    continue
                with self.subTest(start=start, row=row):
                    self.assertRefused(["partner", "set", dom] + row_opts(row), MATRIX[row][5])
            self.check_json_row(self.get(dom), start)

    def test_partial_set_lands_on_refused_row(self):
        self.init_store()
        self.ok("partner", "new", "p17.example", *row_opts(17))
        # row 17 + dialback false = row 18
        self.assertRefused(["partner", "set", "p17.example", "--dialback", "false"], FIX_NONE)
        # row 17 + sasl optional = row 11
        self.assertRefused(["partner", "set", "p17.example", "--sasl", "optional"], FIX_TLS)
        # default row 7 + tls not-supported = row 11
        self.ok("partner", "new", "p7.example")
        self.assertRefused(["partner", "set", "p7.example", "--tls", "not-supported"], FIX_TLS)
        # row 7 + sasl not-supported = row 13 (info), then dialback false = 14
        r = self.ctl("partner", "set", "p7.example", "--sasl", "not-supported")
        self.check_committed_output(r, 13)
        self.assertRefused(["partner", "set", "p7.example", "--dialback", "false"], FIX_NONE)
        self.check_json_row(self.get("p7.example"), 13)
        self.check_json_row(self.get("p17.example"), 17)

    def test_done_when_fabrikam(self):
        """Issue's 'done when': SASL required with TLS not-supported is refused."""
        self.init_store()
        r = self.assertRefused(["partner", "new", "fabrikam.com", "--sasl", "required",
                                "--tls", "not-supported"], "TLS", FIX_TLS)
        self.assertIn("nothing was saved", r.err)
        g = self.ctl("partner", "get", "fabrikam.com")
        self.assertEqual(g.rc, 1, g)
        self.assertEqual(self.all_partners(), [])


# ---- 2./3. defaults and set semantics --------------------------------------------


class TestPartnerSettings(XfedctlCase):

    def test_defaults(self):
        r = self.ok("partner", "new", "x.example")
        self.assertNotIn("warning", r.err, r)
        j = self.get("x.example")
        self.assertEqual(j, {
            "domain": "x.example", "description": "", "additional_domains": [],
            "partner_type": "public-unverified", "tls": "required", "sasl": "optional",
            "dialback": True, "connection_limit": 0, "keepalive": True, "proxy_fqdn": "",
            "matrix_row": 7, "methods": ["sasl_tls", "dialback_tls"],
        })

    def test_all_fields_on_new(self):
        self.ok("partner", "new", "full.example", "--description", "Fabrikam, Inc. (EU)",
                "--additional-domains", "a.full.example, other.example",
                "--partner-type", "federated", "--tls", "optional", "--sasl", "required",
                "--dialback", "false", "--connection-limit", "65535", "--keepalive", "false",
                "--proxy-fqdn", "edge.full.example:5269")
        j = self.get("full.example")
        self.assertEqual(j["description"], "Fabrikam, Inc. (EU)")
        self.assertEqual(j["additional_domains"], ["a.full.example", "other.example"])
        self.assertEqual(j["partner_type"], "federated")
        self.assertEqual(j["matrix_row"], 4)
        self.assertEqual(j["connection_limit"], 65535)
        self.assertIs(j["keepalive"], False)
        self.assertEqual(j["proxy_fqdn"], "edge.full.example:5269")

    def test_field_limits(self):
        self.ok("partner", "new", "lim.example")
        self.assertRefused(["partner", "set", "lim.example", "--connection-limit", "65536"],
                           "xfedctl: refused:", "connection limit")
        self.assertRefused(["partner", "set", "lim.example", "--description", "d" * 1025],
                           "xfedctl: refused:", "description")
        self.ok("partner", "set", "lim.example", "--description", "d" * 1024)
        self.assertEqual(self.get("lim.example")["description"], "d" * 1024)
        self.assertRefused(["partner", "set", "lim.example", "--proxy-fqdn", "bad_host:1"],
                           "xfedctl: refused:", "proxy")
        self.assertRefused(["partner", "set", "lim.example", "--proxy-fqdn", "h.example:0"],
                           "xfedctl: refused:", "port")
        self.assertRefused(["partner", "set", "lim.example", "--connection-limit", "-1"], rc=2)
        self.assertRefused(["partner", "set", "lim.example", "--connection-limit", "ten"], rc=2)

    def test_set_changes_only_given_field(self):
        self.ok("partner", "new", "keep.example", "--description", "orig",
                "--additional-domains", "k1.example,k2.example", "--partner-type",
                "public-verified", "--tls", "optional", "--sasl", "not-supported",
                "--dialback", "true", "--connection-limit", "7", "--keepalive", "false",
                "--proxy-fqdn", "proxy.example")
        expected = self.get("keep.example")
        self.assertEqual(expected["matrix_row"], 15)
        changes = [
            (["--description", "new text"], {"description": "new text"}),
            (["--partner-type", "federated"], {"partner_type": "federated"}),
            (["--connection-limit", "99"], {"connection_limit": 99}),
            (["--keepalive", "true"], {"keepalive": True}),
            (["--proxy-fqdn", "other-proxy.example:5270"],
             {"proxy_fqdn": "other-proxy.example:5270"}),
            (["--proxy-fqdn", ""], {"proxy_fqdn": ""}),
            (["--tls", "required"], {"tls": "required", "matrix_row": 13,
                                     "methods": ["dialback_tls"]}),
            (["--sasl", "optional"], {"sasl": "optional", "matrix_row": 7,
                                      "methods": ["sasl_tls", "dialback_tls"]}),
            (["--dialback", "false"], {"dialback": False, "matrix_row": 8,
                                       "methods": ["sasl_tls"]}),
            (["--add-domain", "k3.example"],
             {"additional_domains": ["k1.example", "k2.example", "k3.example"]}),
            (["--description", ""], {"description": ""}),
        ]
        for opts, delta in changes:
            with self.subTest(opts=opts):
                self.ok("partner", "set", "keep.example", *opts)
                expected.update(delta)
                got = self.get("keep.example")
                got["methods"] = sorted(got["methods"])
                expected["methods"] = sorted(expected["methods"])
                self.assertEqual(got, expected)

    def test_domain_list_operations(self):
        self.ok("partner", "new", "dl.example", "--additional-domains", "a.example,b.example")
        self.assertEqual(self.get("dl.example")["additional_domains"], ["a.example", "b.example"])
        # add: set semantics (no duplicates), case-insensitive
        self.ok("partner", "set", "dl.example", "--add-domain", "c.example",
                "--add-domain", "A.EXAMPLE")
        self.assertEqual(self.get("dl.example")["additional_domains"],
                         ["a.example", "b.example", "c.example"])
        # remove
        self.ok("partner", "set", "dl.example", "--remove-domain", "B.example")
        self.assertEqual(self.get("dl.example")["additional_domains"], ["a.example", "c.example"])
        # removing one that is not listed: refused, nothing saved
        self.assertRefused(["partner", "set", "dl.example", "--remove-domain", "zzz.example"],
                           "xfedctl: refused:", "zzz.example")
        # ... even when combined with a valid change
        self.assertRefused(["partner", "set", "dl.example", "--description", "x",
                            "--remove-domain", "b.example"], "b.example")
        # removing the primary is not removing an additional domain
        self.assertRefused(["partner", "set", "dl.example", "--remove-domain", "dl.example"])
        # --additional-domains replaces the list
        self.ok("partner", "set", "dl.example", "--additional-domains", "x.example,y.example")
        self.assertEqual(self.get("dl.example")["additional_domains"], ["x.example", "y.example"])
        # the released names can be claimed by another partner
        self.ok("partner", "new", "a.example")
        # clear
        self.ok("partner", "set", "dl.example", "--clear-domains")
        self.assertEqual(self.get("dl.example")["additional_domains"], [])
        self.ok("partner", "new", "x.example")
        # clear + add in one command
        self.ok("partner", "set", "dl.example", "--add-domain", "p.example",
                "--add-domain", "q.example")
        self.ok("partner", "set", "dl.example", "--clear-domains", "--add-domain", "r.example")
        self.assertEqual(self.get("dl.example")["additional_domains"], ["r.example"])
        # the store's partner_domains mirrors the list exactly
        con = sqlite3.connect(self.store)
        names = sorted(r[0] for r in con.execute(
            "SELECT name FROM partner_domains WHERE partner='dl.example'"))
        con.close()
        self.assertEqual(names, ["dl.example", "r.example"])

    def test_unknown_and_existing_partner(self):
        self.ok("partner", "new", "exists.example", "--description", "one")
        self.assertRefused(["partner", "new", "exists.example"], "already exists")
        self.assertRefused(["partner", "new", "EXISTS.example", "--description", "two"],
                           "already exists")
        self.assertEqual(self.get("exists.example")["description"], "one")
        self.assertRefused(["partner", "set", "nobody.example", "--description", "x"],
                           "nobody.example")
        self.assertRefused(["partner", "remove", "nobody.example"], "nobody.example")
        g = self.ctl("partner", "get", "nobody.example")
        self.assertEqual(g.rc, 1, g)
        # set with no options is a usage error
        self.assertRefused(["partner", "set", "exists.example"], rc=2)

    def test_remove(self):
        self.ok("partner", "new", "rm.example", "--additional-domains", "rm2.example")
        self.ok("partner", "new", "stay.example")
        r = self.ok("partner", "remove", "RM.example")
        self.assertEqual(r.rc, 0)
        g = self.ctl("partner", "get", "rm.example")
        self.assertEqual(g.rc, 1, g)
        self.assertEqual([p["domain"] for p in self.all_partners()], ["stay.example"])
        # its additional domain is free again
        self.ok("partner", "new", "rm2.example")
        # an additional domain is not a partner of its own
        self.ok("partner", "set", "stay.example", "--add-domain", "alias.example")
        self.assertRefused(["partner", "remove", "alias.example"])
        self.assertRefused(["partner", "set", "alias.example", "--description", "x"],
                           "stay.example")
        con = sqlite3.connect(self.store)
        orphans = con.execute("SELECT count(*) FROM partner_domains WHERE partner NOT IN "
                              "(SELECT domain FROM partners)").fetchone()[0]
        con.close()
        self.assertEqual(orphans, 0)


# ---- 4. uniqueness, local domains --------------------------------------------------


class TestUniqueness(XfedctlCase):

    def setUp(self):
        super().setUp()
        self.ok("partner", "new", "owner.example", "--additional-domains",
                "alias.example,alias2.example")

    def test_new_primary_is_other_additional(self):
        self.assertRefused(["partner", "new", "alias.example"], "xfedctl: refused:",
                           "owner.example")
        self.assertRefused(["partner", "new", "ALIAS2.example"], "owner.example")

    def test_new_additional_is_other_primary(self):
        self.assertRefused(["partner", "new", "n.example", "--additional-domains",
                            "owner.example"], "owner.example")

    def test_new_additional_is_other_additional(self):
        self.assertRefused(["partner", "new", "n.example", "--additional-domains",
                            "free.example,alias2.example"], "owner.example")

    def test_set_takes_other_domain(self):
        self.ok("partner", "new", "other.example")
        self.assertRefused(["partner", "set", "other.example", "--add-domain", "alias.example"],
                           "owner.example")
        self.assertRefused(["partner", "set", "other.example", "--add-domain", "owner.example"],
                           "owner.example")
        self.assertRefused(["partner", "set", "other.example", "--additional-domains",
                            "ok.example,alias2.example"], "owner.example")
        self.assertRefused(["partner", "set", "owner.example", "--add-domain", "other.example"],
                           "other.example")

    def test_own_primary_as_additional(self):
        self.assertRefused(["partner", "new", "self.example", "--additional-domains",
                            "self.example"], "xfedctl: refused:")
        self.assertRefused(["partner", "set", "owner.example", "--add-domain", "owner.example"],
                           "xfedctl: refused:")

    def test_get_of_additional_domain_names_owner(self):
        g = self.ctl("partner", "get", "alias.example")
        self.assertEqual(g.rc, 1, g)
        self.assertIn("owner.example", g.err)

    def test_local_domain_refused(self):
        cfg = os.path.join(self.tmp, "xfed.conf")
        write_config(cfg, self.store, [("contoso.example", "/nonexistent/c.pem",
                                        "/nonexistent/k.pem"),
                                       ("litware.example", "/x/c.pem", "/x/k.pem")])
        self.assertRefused(["partner", "new", "contoso.example"], "xfedctl: refused:",
                           "local domain", config=cfg)
        self.assertRefused(["partner", "new", "CONTOSO.EXAMPLE"], "local domain", config=cfg)
        self.assertRefused(["partner", "new", "p.example", "--additional-domains",
                            "litware.example"], "local domain", config=cfg)
        self.assertRefused(["partner", "set", "owner.example", "--add-domain",
                            "litware.example"], "local domain", config=cfg)
        # the config's store is the one used
        self.ok("partner", "new", "viaconfig.example", config=cfg)
        self.assertEqual(self.get("viaconfig.example")["domain"], "viaconfig.example")
        # a subdomain of a local domain is not the local domain
        self.ok("partner", "new", "sub.contoso.example", config=cfg)

    def test_store_rows_unique(self):
        self.ok("partner", "new", "b.example", "--additional-domains", "b2.example")
        partners = self.all_partners()
        names = [p["domain"] for p in partners] + [d for p in partners
                                                   for d in p["additional_domains"]]
        self.assertEqual(len(names), len(set(names)), names)


# ---- 5. domain syntax -------------------------------------------------------------


LONG_OK = "a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 61  # 253
BAD_DOMAINS = [
    ("", "empty"),
    (LONG_OK + "e", "253"),
    ("x" * 64 + ".example", "63"),
    ("under_score.example", "letters, digits and hyphens"),
    ("with space.example", "letters, digits and hyphens"),
    ("bang!.example", "letters, digits and hyphens"),
    ("bücher.example", "A-label"),
    ("trailing.example.", "trailing dot"),
    ("-lead.example", "hyphen"),
    ("trail-.example", "hyphen"),
    ("sub.-lead.example", "hyphen"),
    ("a..b", "empty label"),
    (".lead.example", "empty label"),
    ("a/b.example", "letters, digits and hyphens"),
    ("user@host.example", "letters, digits and hyphens"),
]


class TestDomains(XfedctlCase):

    def setUp(self):
        super().setUp()
        self.ok("partner", "new", "base.example")

    def test_bad_primary(self):
        for dom, why in BAD_DOMAINS:
            with self.subTest(domain=dom):
                # "--" ends the options, so "-lead.example" is taken as the DOMAIN
                r = self.assertRefused(["partner", "new", "--", dom], "xfedctl: refused:", why)
                if "ü" in dom:
                    self.assertIn("xn--", r.err)
        self.assertEqual([p["domain"] for p in self.all_partners()], ["base.example"])

    def test_bad_additional(self):
        for dom, why in BAD_DOMAINS:
            if dom == "":
                continue  # an empty list item is skipped, not an error
            with self.subTest(domain=dom):
                self.assertRefused(["partner", "new", "n.example", "--additional-domains",
                                    "good.example," + dom], "xfedctl: refused:", why)
                self.assertRefused(["partner", "set", "base.example", "--add-domain", dom],
                                   "xfedctl: refused:", why)
                self.assertRefused(["partner", "set", "base.example", "--additional-domains",
                                    dom], "xfedctl: refused:", why)
        self.assertRefused(["partner", "set", "base.example", "--add-domain", ""],
                           "xfedctl: refused:", "empty")
        self.assertEqual(self.get("base.example")["additional_domains"], [])

    def test_lowercased_and_alabels(self):
        self.ok("partner", "new", "MiXeD.Example.COM", "--additional-domains",
                "UP.Example,xn--bcher-kva.EXAMPLE")
        j = self.get("mixed.example.com")
        self.assertEqual(j["domain"], "mixed.example.com")
        self.assertEqual(j["additional_domains"], ["up.example", "xn--bcher-kva.example"])
        self.assertEqual(self.get("MIXED.example.com")["domain"], "mixed.example.com")
        self.ok("partner", "new", "xn--bcher-kva.de")
        self.assertEqual(self.get("xn--bcher-kva.de")["domain"], "xn--bcher-kva.de")
        con = sqlite3.connect(self.store)
        stored = sorted(r[0] for r in con.execute("SELECT name FROM partner_domains"))
        con.close()
        self.assertEqual(stored, sorted(["base.example", "mixed.example.com", "up.example",
                                         "xn--bcher-kva.example", "xn--bcher-kva.de"]))

    def test_length_limits(self):
        self.ok("partner", "new", LONG_OK)
        self.assertEqual(self.get(LONG_OK)["domain"], LONG_OK)
        self.ok("partner", "new", "x" * 63 + ".example")
        self.ok("partner", "new", "1-2.example")  # digits and inner hyphen


# ---- 6./7. JSON, enums, usage -----------------------------------------------------


class TestCli(XfedctlCase):

    def test_json_outputs(self):
        self.init_store()
        self.assertEqual(self.all_partners(), [])
        self.ok("partner", "new", "j1.example", "--description", 'quote " back\\slash \u00e9')
        self.ok("partner", "new", "j2.example")
        lst = self.all_partners()
        self.assertEqual([p["domain"] for p in lst], ["j1.example", "j2.example"])
        self.assertEqual(lst[0]["description"], 'quote " back\\slash \u00e9')
        keys = {"domain", "description", "additional_domains", "partner_type", "tls", "sasl",
                "dialback", "connection_limit", "keepalive", "proxy_fqdn", "matrix_row",
                "methods"}
        for p in lst:
            self.assertEqual(set(p), keys)
            self.assertIsInstance(p["additional_domains"], list)
            self.assertIsInstance(p["dialback"], bool)
            self.assertIsInstance(p["keepalive"], bool)
            self.assertIsInstance(p["connection_limit"], int)
        one = self.get("j2.example")
        self.assertIsInstance(one, dict)
        self.assertEqual(one, lst[1])
        gw = self.ok("gateway", "get", "--json").json()
        self.assertEqual(gw, {
            "connection_limit": 1000, "partner_connection_limit": 20,
            "keepalive_interval": 300, "stream_establishment_timeout": 60,
            "stream_inactivity_timeout": 600, "dialback_passphrase_set": False,
            "log_message_bodies": False,
        })
        # human output names the partner too
        h = self.ok("partner", "get", "j1.example")
        self.assertIn("j1.example", h.out)

    def test_enum_spellings(self):
        self.ok("partner", "new", "e1.example", "--partner-type", "PublicVerified",
                "--tls", "NotSupported", "--sasl", "NOT_SUPPORTED", "--dialback", "True")
        j = self.get("e1.example")
        self.assertEqual((j["partner_type"], j["tls"], j["sasl"], j["dialback"]),
                         ("public-verified", "not-supported", "not-supported", True))
        self.assertEqual(j["matrix_row"], 17)
        self.ok("partner", "new", "e2.example", "--partner-type", "FEDERATED",
                "--tls", "Required", "--sasl", "OPTIONAL", "--dialback", "FALSE",
                "--keepalive", "False")
        j = self.get("e2.example")
        self.assertEqual((j["partner_type"], j["tls"], j["sasl"], j["dialback"], j["keepalive"]),
                         ("federated", "required", "optional", False, False))
        self.ok("partner", "new", "e3.example", "--partner-type", "public-UNVERIFIED",
                "--tls", "optional", "--sasl", "NotSupported")
        j = self.get("e3.example")
        self.assertEqual((j["partner_type"], j["matrix_row"]), ("public-unverified", 15))
        self.ok("partner", "set", "e3.example", "--partner-type", "publicverified")
        self.assertEqual(self.get("e3.example")["partner_type"], "public-verified")

    def test_usage_errors(self):
        self.ok("partner", "new", "u.example")
        cases = [
            ["partner", "new", "v.example", "--tls", "maybe"],
            ["partner", "new", "v.example", "--sasl", "sometimes"],
            ["partner", "new", "v.example", "--dialback", "perhaps"],
            ["partner", "new", "v.example", "--keepalive", "2"],
            ["partner", "new", "v.example", "--partner-type", "friend"],
            ["partner", "set", "u.example", "--tls", "nope"],
            ["partner", "new", "v.example", "--bogus"],
            ["partner", "set", "u.example", "--bogus", "x"],
            ["partner", "new", "v.example", "--tls"],
            ["partner", "new"],
            ["partner", "set"],
            ["partner", "set", "--description", "x"],
            ["partner", "remove"],
            ["partner", "new", "--tls", "required"],
            ["partner", "new", "v.example", "w.example"],
            ["partner", "new", "v.example", "--add-domain", "a.example"],
            ["partner", "new", "v.example", "--clear-domains"],
            ["partner", "get", "--bogus"],
            ["partner", "get", "a.example", "b.example"],
            ["partner", "remove", "u.example", "--json"],
            ["partner", "frobnicate", "u.example"],
            ["partner"],
            ["gateway"],
            ["gateway", "frobnicate"],
            ["gateway", "set"],
            ["gateway", "set", "--bogus", "1"],
            ["gateway", "set", "--connection-limit"],
            ["gateway", "get", "--bogus"],
            ["frobnicate"],
            [],
        ]
        for args in cases:
            with self.subTest(args=args):
                self.assertRefused(args, rc=2)
        self.assertEqual([p["domain"] for p in self.all_partners()], ["u.example"])

    def test_help(self):
        for args in (["--help"], ["partner", "new", "--help"], ["partner", "set", "--help"],
                     ["partner", "get", "--help"], ["partner", "remove", "--help"],
                     ["gateway", "get", "--help"], ["gateway", "set", "--help"]):
            with self.subTest(args=args):
                r = self.ctl(*args)
                self.assertEqual(r.rc, 0, r)
                self.assertIn("usage:", r.out, r)
        self.assertIn("--tls", self.ctl("partner", "new", "--help").out)
        self.assertIn("--add-domain", self.ctl("partner", "set", "--help").out)
        self.assertIn("--keepalive-interval", self.ctl("gateway", "set", "--help").out)
        # --help on the main command without a store option
        p = subprocess.run([XFEDCTL, "--help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=CLEAN_ENV, timeout=30)
        self.assertEqual(p.returncode, 0)
        self.assertIn(b"usage:", p.stdout)

    def test_store_from_environment(self):
        env = dict(CLEAN_ENV, XFED_STORE=self.store)
        p = subprocess.run([XFEDCTL, "partner", "new", "env.example"], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(self.get("env.example")["domain"], "env.example")
        cfg = os.path.join(self.tmp, "env.conf")
        write_config(cfg, self.store, [("contoso.example", "/x/c.pem", "/x/k.pem")])
        env = dict(CLEAN_ENV, XFED_CONFIG=cfg)
        p = subprocess.run([XFEDCTL, "partner", "new", "contoso.example"], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn(b"local domain", p.stderr)

    def test_store_error(self):
        bad = os.path.join(self.tmp, "no", "such", "dir", "x.db")
        r = self.ctl("partner", "get", store=bad)
        self.assertEqual(r.rc, 3, r)
        junk = os.path.join(self.tmp, "junk.db")
        with open(junk, "wb") as f:
            f.write(b"this is not a database" * 100)
        r = self.ctl("partner", "new", "j.example", store=junk)
        self.assertEqual(r.rc, 3, r)
        cfg = os.path.join(self.tmp, "bad.conf")
        with open(cfg, "w") as f:
            f.write("[xfed]\nbogus_key = 1\n")
        r = self.ctl("partner", "get", config=cfg)
        self.assertEqual(r.rc, 3, r)


# ---- 10. gateway ------------------------------------------------------------------


class TestGateway(XfedctlCase):

    def gw(self):
        return self.ok("gateway", "get", "--json").json()

    def test_ranges(self):
        self.init_store()
        for opt, (key, lo, hi, default) in GATEWAY_RANGES.items():
            with self.subTest(opt=opt):
                self.assertEqual(self.gw()[key], default)
                for bad in (lo - 1, hi + 1):
                    self.assertRefused(["gateway", "set", opt, str(bad)], "xfedctl: refused:",
                                       "out of range")
                for good in (lo, hi, default):
                    self.ok("gateway", "set", opt, str(good))
                    self.assertEqual(self.gw()[key], good)
                self.ok("gateway", "set", "%s=%d" % (opt, lo))
                self.assertEqual(self.gw()[key], lo)
                for junk in ("abc", "12x", "-5", "", "1.5", "0x10"):
                    self.assertRefused(["gateway", "set", opt, junk], rc=2)
                # far beyond the range: refused one way or the other, nothing saved
                before = self.dump()
                r = self.ctl("gateway", "set", opt, "99999999999")
                self.assertIn(r.rc, (1, 2), r)
                self.assertEqual(self.dump(), before)
                self.ok("gateway", "set", opt, str(default))
        # a refused value in a multi-option set saves none of them
        self.assertRefused(["gateway", "set", "--connection-limit", "5",
                            "--partner-connection-limit", "0"], "out of range")
        self.assertEqual(self.gw()["connection_limit"], 1000)

    def test_passphrase_never_printed(self):
        secret = "Zq7-pass-PHRASE-91xk"
        r = self.ok("gateway", "set", "--dialback-passphrase", secret)
        self.assertNotIn(secret, r.out + r.err)
        j = self.ok("gateway", "get", "--json")
        self.assertIs(j.json()["dialback_passphrase_set"], True)
        self.assertNotIn(secret, j.out + j.err)
        h = self.ok("gateway", "get")
        self.assertNotIn(secret, h.out + h.err)
        self.assertNotIn(secret[:8], h.out + j.out)
        # other settings untouched
        self.assertEqual(j.json()["connection_limit"], 1000)
        # clearing it
        self.ok("gateway", "set", "--dialback-passphrase", "")
        self.assertIs(self.gw()["dialback_passphrase_set"], False)

    def test_log_message_bodies(self):
        self.assertIs(self.gw()["log_message_bodies"], False)
        self.ok("gateway", "set", "--log-message-bodies", "true")
        self.assertIs(self.gw()["log_message_bodies"], True)
        self.ok("gateway", "set", "--log-message-bodies", "FALSE")
        self.assertIs(self.gw()["log_message_bodies"], False)
        self.ok("gateway", "set", "--log-message-bodies", "True")
        self.assertIs(self.gw()["log_message_bodies"], True)
        self.assertRefused(["gateway", "set", "--log-message-bodies", "maybe"], rc=2)
        self.assertIs(self.gw()["log_message_bodies"], True)

    def test_settings_independent(self):
        self.ok("gateway", "set", "--connection-limit", "5000", "--keepalive-interval", "120")
        self.ok("gateway", "set", "--stream-establishment-timeout", "30")
        g = self.gw()
        self.assertEqual((g["connection_limit"], g["keepalive_interval"],
                          g["stream_establishment_timeout"], g["partner_connection_limit"]),
                         (5000, 120, 30, 20))


# ---- 8. concurrency ---------------------------------------------------------------


class TestConcurrency(XfedctlCase):

    def spawn(self, *args):
        return subprocess.Popen([XFEDCTL, "--store", self.store] + list(args),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=CLEAN_ENV)

    def finish(self, procs):
        out = []
        for p in procs:
            o, e = p.communicate(timeout=60)
            out.append((p.returncode, e.decode("utf-8", "replace")))
        return out

    def check_store(self):
        self.assertEqual(integrity(self.store), ["ok"])
        partners = self.all_partners()
        names = [p["domain"] for p in partners] + [d for p in partners
                                                   for d in p["additional_domains"]]
        self.assertEqual(len(names), len(set(names)), "a domain claimed twice")
        con = sqlite3.connect(self.store)
        rows = con.execute("SELECT name, partner FROM partner_domains").fetchall()
        con.close()
        self.assertEqual(sorted(names), sorted(r[0] for r in rows))
        return partners

    def test_fresh_store_race(self):
        """Several writers opening a store that does not exist yet (all migrate)."""
        for rnd in range(6):
            store = os.path.join(self.tmp, "fresh%d.db" % rnd)
            procs = [subprocess.Popen([XFEDCTL, "--store", store, "partner", "new",
                                       "w%d.example" % w], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, env=CLEAN_ENV) for w in range(4)]
            res = self.finish(procs)
            for rc, err in res:
                self.assertEqual(rc, 0, "round %d: %r" % (rnd, res))
            self.assertEqual(integrity(store), ["ok"])
            doms = [p["domain"] for p in self.all_partners(store=store)]
            self.assertEqual(doms, ["w%d.example" % w for w in range(4)])

    def test_concurrent_writers(self):
        self.init_store()
        expect = set()
        for i in range(30):
            procs = [self.spawn("partner", "new", "w%d-%d.example" % (w, i), "--description",
                                "worker %d" % w, "--additional-domains",
                                "alt-w%d-%d.example" % (w, i)) for w in range(4)]
            res = self.finish(procs)
            for w, (rc, err) in enumerate(res):
                self.assertEqual(rc, 0, "iteration %d worker %d: %s" % (i, w, err))
                expect.add("w%d-%d.example" % (w, i))
        partners = self.check_store()
        self.assertEqual({p["domain"] for p in partners}, expect)
        self.assertEqual(len(partners), 120)

    def test_race_same_domain(self):
        self.init_store()
        winners = set()
        for i in range(20):
            dom = "same%d.example" % i
            procs = [self.spawn("partner", "new", dom, "--description", "proc %d" % k)
                     for k in range(2)]
            res = self.finish(procs)
            rcs = sorted(rc for rc, _ in res)
            self.assertEqual(rcs, [0, 1], "iteration %d: %r" % (i, res))
            loser = [e for rc, e in res if rc == 1][0]
            self.assertIn("already exists", loser)
            winner = [k for k, (rc, _) in enumerate(res) if rc == 0][0]
            self.assertEqual(self.get(dom)["description"], "proc %d" % winner)
            winners.add(dom)
        self.assertEqual({p["domain"] for p in self.check_store()}, winners)

    def test_race_same_additional_domain(self):
        self.init_store()
        for i in range(20):
            self.ok("partner", "new", "pa%d.example" % i)
            self.ok("partner", "new", "pb%d.example" % i)
        for i in range(20):
            shared = "shared%d.example" % i
            owners = ["pa%d.example" % i, "pb%d.example" % i]
            procs = [self.spawn("partner", "set", o, "--add-domain", shared) for o in owners]
            res = self.finish(procs)
            self.assertEqual(sorted(rc for rc, _ in res), [0, 1], "iteration %d: %r" % (i, res))
            winner = owners[[rc for rc, _ in res].index(0)]
            loser = owners[[rc for rc, _ in res].index(1)]
            self.assertIn(winner, [e for rc, e in res if rc == 1][0])
            self.assertEqual(self.get(winner)["additional_domains"], [shared])
            self.assertEqual(self.get(loser)["additional_domains"], [])
        self.check_store()

    def test_race_new_primary_vs_new_additional(self):
        self.init_store()
        expect = set()
        for i in range(15):
            a = self.spawn("partner", "new", "x%d.example" % i, "--additional-domains",
                           "y%d.example" % i)
            b = self.spawn("partner", "new", "y%d.example" % i)
            res = self.finish([a, b])
            self.assertEqual(sorted(rc for rc, _ in res), [0, 1], "iteration %d: %r" % (i, res))
            expect.add("x%d.example" % i if res[0][0] == 0 else "y%d.example" % i)
        self.assertEqual({p["domain"] for p in self.check_store()}, expect)

    def test_mixed_writers_and_readers(self):
        self.init_store()
        rng = random.Random(8)
        for i in range(10):
            self.ok("partner", "new", "m%d.example" % i)
        for it in range(15):
            procs, kinds = [], []
            for k in range(6):
                d = "m%d.example" % rng.randrange(10)
                choice = rng.randrange(4)
                if choice == 0:
                    procs.append(self.spawn("partner", "get", "--json"))
                elif choice == 1:
                    procs.append(self.spawn("gateway", "set", "--connection-limit",
                                            str(rng.randrange(1, 5000))))
                elif choice == 2:
                    procs.append(self.spawn("partner", "set", d, *row_opts(
                        rng.choice(COMMITTED_ROWS))))
                else:
                    procs.append(self.spawn("partner", "set", d, "--add-domain",
                                            "alt%d.example" % rng.randrange(5)))
                kinds.append(choice)
            for (rc, err), kind in zip(self.finish(procs), kinds):
                # only --add-domain of an already-claimed name may be refused
                self.assertIn(rc, (0, 1) if kind == 3 else (0,), "%d: %s" % (kind, err))
        self.check_store()


# ---- 9. crash safety ----------------------------------------------------------------


class TestCrashSafety(XfedctlCase):
    """Writers killed with SIGKILL mid-commit. Every write of generation n sets
    description 'gen n', connection limit n and additional domains for n
    together, so a half-applied commit would show as a mismatch."""

    POOL = 12

    def write_cmd(self, rng, gen):
        label = "c%d" % rng.randrange(self.POOL)
        dom = label + ".example"
        kind = rng.randrange(10)
        if kind == 0:
            return ["partner", "remove", dom]
        row = rng.choice(COMMITTED_ROWS)
        return (["partner", "new" if kind < 4 else "set", dom, "--description", "gen %d" % gen,
                 "--connection-limit", str(gen), "--additional-domains",
                 "%s-g%d-a.alt.example,%s-g%d-b.alt.example" % (label, gen, label, gen)]
                + row_opts(row))

    def check_invariants(self, rnd):
        r = self.ctl("partner", "get", "--json")  # xfedctl opens the store first
        self.assertEqual(r.rc, 0, "round %d: %r" % (rnd, r))
        listed = r.json()
        self.assertEqual(integrity(self.store), ["ok"], "round %d" % rnd)
        con = sqlite3.connect(self.store)
        try:
            partners = con.execute("SELECT domain, tls, sasl, dialback, description, "
                                   "connection_limit FROM partners").fetchall()
            pd = con.execute("SELECT name, partner, is_primary FROM partner_domains").fetchall()
            gw = con.execute("SELECT count(*) FROM gateway").fetchone()[0]
        finally:
            con.close()
        self.assertEqual(gw, 1)
        self.assertEqual(sorted(p[0] for p in partners), [p["domain"] for p in listed])
        pdomains = {p[0] for p in partners}
        primaries = {(n, p) for n, p, prim in pd if prim}
        for dom, tls, sasl, db, desc, limit in partners:
            self.assertIn((dom, dom), primaries, "round %d: %s has no primary row" % (rnd, dom))
            self.assertNotIn((tls, sasl, bool(db)), REFUSED_TRIPLES, "round %d: %s" % (rnd, dom))
        for name, partner, prim in pd:
            self.assertIn(partner, pdomains, "round %d: orphan domain %s" % (rnd, name))
            if prim:
                self.assertEqual(name, partner)
        self.assertEqual(len(primaries), len(partners))
        # atomicity: each partner shows exactly one generation's write
        for p in listed:
            if p["description"] == "":
                continue  # seeded, never rewritten
            gen = int(p["description"].split()[1])
            label = p["domain"].split(".")[0]
            self.assertEqual(p["connection_limit"], gen, p)
            self.assertEqual(p["additional_domains"],
                             ["%s-g%d-a.alt.example" % (label, gen),
                              "%s-g%d-b.alt.example" % (label, gen)], p)

    def test_sigkill_mid_commit(self):
        rng = random.Random(20240611)
        self.init_store()
        for i in range(0, self.POOL, 2):
            self.ok("partner", "new", "c%d.example" % i)
        gen = 0
        killed = 0
        for rnd in range(20):
            procs, started = [], []
            for k in range(10):
                gen += 1
                started.append(time.monotonic())
                procs.append(subprocess.Popen([XFEDCTL, "--store", self.store]
                                              + self.write_cmd(rng, gen),
                                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                              env=CLEAN_ENV))
            # each victim dies 0-20 ms after its own start (skewed to the first few ms,
            # where the open and the commit happen)
            victims = sorted(((started[k] + 0.020 * rng.random() ** 3, procs[k])
                              for k in rng.sample(range(len(procs)), 6)), key=lambda v: v[0])
            for when, p in victims:
                wait = when - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                try:
                    p.send_signal(signal.SIGKILL)
                except ProcessLookupError:
                    pass
            victim_set = {id(p) for _, p in victims}
            for p in procs:
                _, err = p.communicate(timeout=60)
                if p.returncode == -signal.SIGKILL:
                    killed += 1
                    self.assertIn(id(p), victim_set)
                    continue
                self.assertIn(p.returncode, (0, 1),
                              "round %d: %s" % (rnd, err.decode("utf-8", "replace")))
            self.check_invariants(rnd)
        # the store stays writable after all that
        self.ok("partner", "new", "after-crash.example")
        self.ok("gateway", "set", "--connection-limit", "777")
        self.check_invariants(-1)
        self.assertGreater(killed, 0, "no process was killed: the test did not test anything")

    def test_sigkill_gateway_writers(self):
        rng = random.Random(7)
        self.init_store()
        for rnd in range(8):
            procs = []
            for k in range(8):
                n = rng.randrange(10, 3600)
                procs.append(subprocess.Popen(
                    [XFEDCTL, "--store", self.store, "gateway", "set",
                     "--keepalive-interval", str(n), "--stream-establishment-timeout",
                     str(n), "--dialback-passphrase", "pp%d" % n],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=CLEAN_ENV))
            time.sleep(0.020 * rng.random() ** 2)
            for p in rng.sample(procs, 4):
                try:
                    p.send_signal(signal.SIGKILL)
                except ProcessLookupError:
                    pass
            for p in procs:
                p.wait(timeout=60)
                self.assertIn(p.returncode, (0, -signal.SIGKILL))
            g = self.ok("gateway", "get", "--json").json()
            self.assertEqual(integrity(self.store), ["ok"])
            # a commit is all or nothing: the three settings come from one command
            if g["keepalive_interval"] != 300:
                self.assertEqual(g["keepalive_interval"], g["stream_establishment_timeout"])
            con = sqlite3.connect(self.store)
            pp = con.execute("SELECT dialback_passphrase, keepalive_interval "
                             "FROM gateway").fetchone()
            con.close()
            if pp[0]:
                self.assertEqual(pp[0], "pp%d" % pp[1])


# ---- 11. internal-config: the internal servers' snippets (spec §1) -------------------


def find_luac():
    for name in ("luac", "luac5.4", "luac5.3", "luac5.2"):
        path = shutil.which(name)
        if path:
            return path
    return None


class TestInternalConfig(XfedctlCase):
    SECRET = 'c0mp"on\\ent'  # a double quote and a backslash to escape
    LUA_SECRET = '"c0mp\\"on\\\\ent"'
    YAML_SECRET = LUA_SECRET  # the same escapes in a YAML double-quoted scalar

    def config(self, internals=(("prosody1", "10.0.0.5", 5347, SECRET),), name="xfed.conf"):
        cfg = os.path.join(self.tmp, name)
        write_config(cfg, self.store)
        with open(cfg, "a") as f:
            for iname, host, port, secret in internals:
                f.write("\n[internal %s]\nhost = %s\nport = %d\nsecret = %s\n"
                        % (iname, host, port, secret))
        return cfg

    def seed(self):
        self.ok("partner", "new", "fabrikam.example", "--additional-domains", "Fabrikam.NET")
        self.ok("partner", "new", "contoso.org")

    def snippet(self, *args, config=None):
        r = self.ok("internal-config", *args, config=config or self.config())
        return r.out

    def test_prosody(self):
        self.seed()
        out = self.snippet("--prosody")
        lines = out.splitlines()
        self.assertTrue(lines[0].startswith("-- xfed"), out)
        self.assertIn("[internal prosody1]", lines[0])
        self.assertIn("component_ports = { 5347 }\n", out)
        self.assertIn('component_interface = "10.0.0.5"\n', out)
        domains = ["contoso.org", "fabrikam.example", "fabrikam.net"]
        for d in domains:
            self.assertIn('Component "%s"\n    component_secret = %s\n' % (d, self.LUA_SECRET),
                          out)
        self.assertEqual(out.count("Component \""), 3, out)
        self.assertEqual(out.count("component_secret"), 3, out)
        # sorted by domain; the global settings come before the first Component
        pos = [out.index('Component "%s"' % d) for d in domains]
        self.assertEqual(pos, sorted(pos), out)
        self.assertLess(out.index("component_ports"), pos[0])
        luac = find_luac()
        if luac:
            lua = os.path.join(self.tmp, "snippet.cfg.lua")
            with open(lua, "w") as f:
                f.write(out)
            p = subprocess.run([luac, "-p", lua], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=30)
            self.assertEqual(p.returncode, 0, p.stderr.decode("utf-8", "replace") + out)
        # a removed partner's domains are gone from the next snippet
        self.ok("partner", "remove", "contoso.org")
        out = self.snippet("--prosody")
        self.assertNotIn("contoso.org", out)
        self.assertEqual(out.count("Component \""), 2, out)

    @unittest.skipUnless(find_luac(), "no luac")
    def test_prosody_lua_syntax_with_odd_secret(self):
        self.seed()
        cfg = self.config([("p", "::1", 5347, "a\\\"b\"\\\\c'd\tend")])
        out = self.snippet("--prosody", config=cfg)
        lua = os.path.join(self.tmp, "odd.cfg.lua")
        with open(lua, "w") as f:
            f.write(out)
        p = subprocess.run([find_luac(), "-p", lua], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr.decode("utf-8", "replace") + out)
        # where a Lua interpreter exists, the string reads back as the secret
        lua_bin = shutil.which("lua") or shutil.which("lua5.4")
        if lua_bin:
            prog = ("function Component(name) end\n" + out +
                    "\nio.write(component_interface, '|', component_secret)\n")
            p = subprocess.run([lua_bin, "-"], input=prog.encode(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=30)
            self.assertEqual(p.returncode, 0, p.stderr.decode("utf-8", "replace") + out)
            self.assertEqual(p.stdout.decode(), "::1|a\\\"b\"\\\\c'd\tend")

    def test_ejabberd(self):
        self.seed()
        cfg = self.config([("prosody1", "10.0.0.5", 5347, "first"),
                           ("ejabberd1", "10.0.0.6", 5348, self.SECRET)])
        out = self.snippet("--ejabberd", "--internal", "ejabberd1", config=cfg)
        lines = out.splitlines()
        self.assertTrue(lines[0].startswith("# xfed"), out)
        self.assertIn("[internal ejabberd1]", lines[0])
        self.assertIn('listen:\n  -\n    port: 5348\n    ip: "10.0.0.6"\n'
                      '    module: ejabberd_service\n    hosts:\n', out)
        hosts = ["contoso.org", "fabrikam.example", "fabrikam.net"]
        for h in hosts:
            self.assertIn('      "%s":\n        password: %s\n' % (h, self.YAML_SECRET), out)
        self.assertEqual(out.count("password:"), 3, out)
        pos = [out.index('"%s":' % h) for h in hosts]
        self.assertEqual(pos, sorted(pos), out)
        self.assertNotIn("first", out)
        try:
            import yaml  # optional: PyYAML is not needed for the rest
        except ImportError:
            yaml = None
        if yaml:
            doc = yaml.safe_load(out)
            item = doc["listen"][0]
            self.assertEqual(item["port"], 5348)
            self.assertEqual(item["module"], "ejabberd_service")
            self.assertEqual(item["hosts"], {h: {"password": self.SECRET} for h in hosts})
        # the first [internal] section by default
        out = self.snippet("--ejabberd", config=cfg)
        self.assertIn("[internal prosody1]", out.splitlines()[0])
        self.assertIn("port: 5347\n", out)
        self.assertIn('password: "first"', out)

    def test_no_partners(self):
        for flavour, comment in (("--prosody", "--"), ("--ejabberd", "#")):
            with self.subTest(flavour=flavour):
                out = self.snippet(flavour)
                lines = out.splitlines()
                self.assertGreaterEqual(len(lines), 2, out)
                for line in lines:
                    self.assertTrue(line.startswith(comment), out)
                self.assertIn("no partners", out)
                self.assertNotIn(self.SECRET, out)

    def test_usage_errors(self):
        self.seed()
        # no config at all (only a store): exit 2, says what is missing
        if not os.path.exists("/etc/xfed/xfed.conf"):
            r = self.ctl("internal-config", "--prosody")
            self.assertEqual(r.rc, 2, r)
            self.assertIn("--config", r.err)
            self.assertEqual(r.out, "")
        # a config without an [internal] section: exit 2, names the section
        cfg = self.config(internals=(), name="nointernal.conf")
        r = self.ctl("internal-config", "--prosody", config=cfg)
        self.assertEqual(r.rc, 2, r)
        self.assertIn("[internal", r.err)
        self.assertIn("nointernal.conf", r.err)
        self.assertEqual(r.out, "")
        cfg = self.config()
        for args, needle in (([], "--prosody"), (["--prosody", "--ejabberd"], "--prosody"),
                             (["--prosody", "--internal", "nope"], "nope"),
                             (["--prosody", "--internal"], "--internal"),
                             (["--lua"], "--lua")):
            with self.subTest(args=args):
                r = self.ctl("internal-config", *args, config=cfg)
                self.assertEqual(r.rc, 2, r)
                self.assertIn(needle, r.err)
                self.assertEqual(r.out, "")
        r = self.ok("internal-config", "--help", config=cfg)
        self.assertIn("--ejabberd", r.out)
        self.assertIn("internal-config", self.ok("--help").out)


# ---- 12. xfed --check ----------------------------------------------------------------


def have_openssl():
    return shutil.which("openssl") is not None


class TestDaemonCheck(XfedctlCase):

    @classmethod
    def setUpClass(cls):
        cls.certdir = tempfile.mkdtemp(prefix="xfed-certs-")
        cls.pairs = {}
        if not have_openssl():
            return
        for name in ("a", "b"):
            cert = os.path.join(cls.certdir, name + "-c.pem")
            key = os.path.join(cls.certdir, name + "-k.pem")
            subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                            "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                            "-days", "30", "-subj", "/CN=contoso.example", "-addext",
                            "subjectAltName=DNS:contoso.example"],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            cls.pairs[name] = (cert, key)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.certdir, True)

    def xfed_check(self, cfg):
        p = subprocess.run([XFED, "--config", cfg, "--check"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=CLEAN_ENV, timeout=60)
        return Result([XFED, cfg], p.returncode, p.stdout.decode("utf-8", "replace"),
                      p.stderr.decode("utf-8", "replace"))

    def config(self, cert=None, key=None, name="xfed.conf"):
        cfg = os.path.join(self.tmp, name)
        locs = [("contoso.example", cert, key)] if cert else []
        write_config(cfg, self.store, locs)
        return cfg

    def seed_valid(self):
        self.ok("partner", "new", "good.example")
        self.ok("partner", "new", "bad.example", *row_opts(13))
        self.ok("partner", "new", "dbonly.example", *row_opts(17))

    def hand_update(self, sql):
        con = sqlite3.connect(self.store)
        con.execute(sql)
        con.commit()
        con.close()

    def test_check_without_locals(self):
        self.seed_valid()
        r = self.xfed_check(self.config())
        self.assertEqual(r.rc, 0, r)
        self.hand_update("UPDATE partners SET tls='not-supported', sasl='required' "
                         "WHERE domain='bad.example'")
        r = self.xfed_check(self.config())
        self.assertEqual(r.rc, 1, r)
        self.assertIn("bad.example", r.out + r.err)

    @unittest.skipUnless(have_openssl(), "openssl not installed")
    def test_check_valid_and_refused_rows(self):
        cert, key = self.pairs["a"]
        cfg = self.config(cert, key)
        self.seed_valid()
        r = self.xfed_check(cfg)
        self.assertEqual(r.rc, 0, r)
        # rows 5, 6, 11, 12, 14, 16, 18 written by hand
        for row in (5, 6, 11, 12, 14, 16, 18):
            with self.subTest(row=row):
                tls, sasl, db = MATRIX[row][:3]
                self.hand_update("UPDATE partners SET tls='%s', sasl='%s', dialback=%d "
                                 "WHERE domain='bad.example'" % (tls, sasl, db))
                r = self.xfed_check(cfg)
                self.assertEqual(r.rc, 1, r)
                both = r.out + r.err
                self.assertIn("bad.example", both)
                self.assertNotIn("good.example", both)
                self.assertIn(MATRIX[row][5], both)
        # fixed by xfedctl again: valid
        self.ok("partner", "set", "bad.example", *row_opts(7))
        r = self.xfed_check(cfg)
        self.assertEqual(r.rc, 0, r)

    @unittest.skipUnless(have_openssl(), "openssl not installed")
    def test_check_partner_claims_local_domain(self):
        cert, key = self.pairs["a"]
        cfg = self.config(cert, key)
        self.ok("partner", "new", "good.example")
        r = self.xfed_check(cfg)
        self.assertEqual(r.rc, 0, r)
        # written without the config, so xfedctl could not know the local domain
        self.ok("partner", "new", "other.example", "--additional-domains", "contoso.example")
        r = self.xfed_check(cfg)
        self.assertEqual(r.rc, 1, r)
        self.assertIn("other.example", r.out + r.err)

    @unittest.skipUnless(have_openssl(), "openssl not installed")
    def test_check_key_mismatch(self):
        cert_a, _ = self.pairs["a"]
        _, key_b = self.pairs["b"]
        self.seed_valid()
        r = self.xfed_check(self.config(cert_a, key_b))
        self.assertEqual(r.rc, 1, r)
        both = r.out + r.err
        self.assertIn("contoso.example", both)
        self.assertIn("does not match", both)
        r = self.xfed_check(self.config(cert_a, os.path.join(self.tmp, "missing.pem")))
        self.assertEqual(r.rc, 1, r)
        self.assertIn("missing.pem", r.out + r.err)


def main():
    global XFEDCTL, XFED
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--xfedctl", required=True)
    ap.add_argument("--xfed", required=True)
    args, rest = ap.parse_known_args()
    XFEDCTL = os.path.abspath(args.xfedctl)
    XFED = os.path.abspath(args.xfed)
    for b in (XFEDCTL, XFED):
        if not os.access(b, os.X_OK):
            print("test_xfedctl: %s is not an executable" % b, file=sys.stderr)
            return 2
    prog = unittest.main(argv=[sys.argv[0]] + rest, exit=False)
    r = prog.result
    print("test_xfedctl: %d tests, %d failures, %d errors, %d skipped" % (
        r.testsRun, len(r.failures), len(r.errors), len(r.skipped)))
    return 0 if r.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
