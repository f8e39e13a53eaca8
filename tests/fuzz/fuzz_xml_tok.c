/* fuzz_xml_tok: the tokenizer fed in random chunkings must give exactly the events (types,
 * byte ranges, names, attributes, error condition and offset) it gives on the whole input,
 * and byte by byte. Each chunk lives in its own heap block freed right after the tokenizer
 * returns NONE, so ASan sees any read past or after a chunk.
 *
 * In stream mode every stanza is also re-serialised (xml_ser.h), stamped with a 'from' and
 * with <status/> children dropped; the output must be well-formed under a stream header that
 * declares nothing but the stream prefix, must need no further re-serialisation, and must
 * re-serialise to itself.
 *
 * Input: byte 0 picks the mode and limits, bytes 1..8 seed the chunk sizes, the rest is the
 * stream.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xml_ser.h"
#include "xml_trace.h"

#define PLAIN_HDR                                                                                  \
    "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'>"

/* Re-serialise a stanza; returns its length or -1. */
static long reser_one(const xf_xml_tok *t, const xf_xml_stanza *s, const xf_xml_ser_opts *o,
                      char *out, size_t cap)
{
    return xf_xml_reserialize(t, s, o, out, cap);
}

/* Tokenizes PLAIN_HDR + out directly (not through the text trace, whose fields a value could
 * imitate) and checks the one stanza it must hold. */
static void check_reserialized(const char *out, size_t n)
{
    static char doc[(1 << 18) + 128];
    static char again[1 << 18];
    static void *mem;
    static xf_xml_limits lim;
    size_t h = sizeof PLAIN_HDR - 1;
    if (n + h > sizeof doc) return;
    if (mem == NULL) {
        xf_xml_limits_default(&lim);
        lim.stanza_bytes_max = lim.stanza_bytes_cap = 1u << 18;
        mem = malloc(xf_xml_mem_size(&lim));
    }
    memcpy(doc, PLAIN_HDR, h);
    memcpy(doc + h, out, n);
    xf_xml_tok t;
    xf_xml_event ev;
    xf_xml_event_type ty;
    xf_xml_init(&t, &lim, XF_XML_STREAM, mem, xf_xml_mem_size(&lim));
    xf_xml_feed(&t, doc, n + h);
    int stanzas = 0, reser = 0, error = 0;
    long again_len = -1;
    while ((ty = xf_xml_next(&t, &ev)) != XF_XML_EV_NONE) {
        if (ty == XF_XML_EV_ERROR) {
            error = 1;
            break;
        }
        if (ty != XF_XML_EV_STANZA) continue;
        stanzas++;
        reser |= ev.stanza.needs_reserialize;
        again_len = reser_one(&t, &ev.stanza, NULL, again, sizeof again);
    }
    if (error || stanzas != 1 || reser || again_len != (long)n || memcmp(again, out, n) != 0) {
        fprintf(stderr,
                "re-serialised stanza:\n%.*s\nerror %d (%s at %llu) stanzas %d reser %d\n"
                "again:\n%.*s\n",
                (int)n, out, error, error ? ev.error.text : "", (unsigned long long)ev.offset,
                stanzas, reser, again_len > 0 ? (int)again_len : 0, again);
        abort();
    }
}

static void stanza_hook(const xf_xml_tok *t, const xf_xml_stanza *s)
{
    static char out[1 << 18];
    static const xf_xml_ser_opts opts[2] = {{{NULL, 0}, NULL, NULL, false},
                                            {{"me@x.example/r&\"<", 17}, "status", NULL, true}};
    for (int i = 0; i < 2; i++) {
        long n = reser_one(t, s, &opts[i], out, sizeof out);
        if (n < 0) continue; /* larger than the buffer or the bounds: reported, not an error */
        check_reserialized(out, (size_t)n);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 10) return 0;
    uint8_t cfg = data[0];
    uint64_t seed = 0;
    memcpy(&seed, data + 1, 8);
    const char *in = (const char *)data + 9;
    size_t len = size - 9;
    xf_xml_limits lim;
    xf_xml_limits_default(&lim);
    if (cfg & 2) { /* small limits, to reach every limit path */
        lim.stanza_bytes_max = lim.stanza_bytes_cap = 64;
        lim.header_bytes_max = 96;
        lim.depth_max = 4;
        lim.attrs_max = 3;
        lim.ns_max = 4;
        lim.name_bytes_max = 8;
    }
    xf_xml_mode mode = (cfg & 1) ? XF_XML_STREAM : XF_XML_DOCUMENT;
    xt_buf whole = {0}, chunked = {0}, bytes = {0};
    xt_stanza_hook = mode == XF_XML_STREAM ? stanza_hook : NULL;
    int rc = xt_run(&lim, mode, in, len, xt_whole, NULL, &whole);
    xt_stanza_hook = NULL;
    if (rc != 0) {
        fprintf(stderr, "whole-input invariant failed:\n%s\n", whole.s);
        abort();
    }
    if (xt_run(&lim, mode, in, len, xt_random, &seed, &chunked) != 0) {
        fprintf(stderr, "chunked invariant failed:\n%s\n", chunked.s);
        abort();
    }
    if (strcmp(whole.s, chunked.s) != 0) {
        fprintf(stderr, "whole:\n%s\nchunked:\n%s\n", whole.s, chunked.s);
        abort();
    }
    if ((cfg & 4) && len < 4096) {
        if (xt_run(&lim, mode, in, len, xt_bytewise, NULL, &bytes) != 0 ||
            strcmp(whole.s, bytes.s) != 0) {
            fprintf(stderr, "whole:\n%s\nbyte by byte:\n%s\n", whole.s, bytes.s);
            abort();
        }
    }
    xt_free(&whole);
    xt_free(&chunked);
    xt_free(&bytes);
    return 0;
}
