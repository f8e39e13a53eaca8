/* xml_trace.h: runs input through the tokenizer in a given chunking and writes the events as
 * text, so that runs can be compared byte for byte (tests and fuzz targets).
 *
 * Every chunk is copied into its own heap block of exactly its size and freed as soon as the
 * tokenizer returns NONE, so ASan catches any read past a chunk or after its release. Every
 * event's byte range is checked against the original input (xt_run returns -1 on a mismatch).
 * Adjacent keepalives are merged: a white-space run that straddles chunks may be reported in
 * pieces, and that is the one documented chunking-dependent difference.
 */
#ifndef XF_XML_TRACE_H
#define XF_XML_TRACE_H

#include <stddef.h>

#include "xml_tok.h"

typedef struct xt_buf {
    char *s;
    size_t len, cap;
} xt_buf;

/* Returns the size of the next chunk (>= 1) given the bytes that remain. */
typedef size_t (*xt_chunker)(void *ctx, size_t remaining);

/* 0 on success (the trace is in out, which the caller frees), -1 on an invariant violation
 * (out holds the reason at its end). */
int xt_run(const xf_xml_limits *lim, xf_xml_mode mode, const char *in, size_t len,
           xt_chunker chunker, void *ctx, xt_buf *out);

size_t xt_whole(void *ctx, size_t remaining);
size_t xt_bytewise(void *ctx, size_t remaining);
/* ctx: size_t *first: one chunk of *first bytes, then the rest. */
size_t xt_split(void *ctx, size_t remaining);
/* ctx: uint64_t *state of a PRNG: chunk sizes 1..64 mostly, sometimes larger. */
size_t xt_random(void *ctx, size_t remaining);

void xt_free(xt_buf *b);

/* Called for every STANZA event before the next xf_xml_next call (NULL: none). */
extern void (*xt_stanza_hook)(const xf_xml_tok *t, const xf_xml_stanza *s);

#endif
