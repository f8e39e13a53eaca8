/* fuzz_xml_tok: the tokenizer fed in random chunkings must give exactly the events (types,
 * byte ranges, names, attributes, error condition and offset) it gives on the whole input,
 * and byte by byte. Each chunk lives in its own heap block freed right after the tokenizer
 * returns NONE, so ASan sees any read past or after a chunk.
 *
 * Input: byte 0 picks the mode and limits, bytes 1..8 seed the chunk sizes, the rest is the
 * stream.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xml_trace.h"

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
    if (xt_run(&lim, mode, in, len, xt_whole, NULL, &whole) != 0) {
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
