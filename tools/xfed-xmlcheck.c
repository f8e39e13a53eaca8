/* xfed-xmlcheck: is FILE well-formed XMPP-restricted XML, through xfed's own tokenizer?
 *
 *   xfed-xmlcheck FILE             one document: optional declaration, one root element
 *   xfed-xmlcheck --stream FILE    an XMPP stream (root must be <stream:stream>)
 *
 * Exit 0 when it is, 1 when it is not (the stream error condition and the byte offset are
 * printed), 2 on usage or I/O errors. Limits other than size are the defaults of spec §8.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xml_tok.h"

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf != NULL) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        char *bigger = cap < (1u << 29) ? realloc(buf, cap * 2) : NULL;
        if (bigger == NULL) free(buf);
        buf = bigger;
        cap *= 2;
    }
    if (buf != NULL && ferror(f)) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = n;
    return buf;
}

int main(int argc, char **argv)
{
    xf_xml_mode mode = XF_XML_DOCUMENT;
    int arg = 1;
    if (argc == 3 && strcmp(argv[1], "--stream") == 0) {
        mode = XF_XML_STREAM;
        arg = 2;
    }
    if (arg != argc - 1) {
        fprintf(stderr, "usage: xfed-xmlcheck [--stream] FILE\n");
        return 2;
    }
    size_t len = 0;
    char *doc = read_file(argv[arg], &len);
    if (doc == NULL) {
        fprintf(stderr, "xfed-xmlcheck: cannot read %s\n", argv[arg]);
        return 2;
    }
    if (len >= XF_XML_BYTES_CAP) {
        fprintf(stderr, "xfed-xmlcheck: %s is too large\n", argv[arg]);
        return 2;
    }
    xf_xml_limits lim;
    xf_xml_limits_default(&lim);
    /* A document is one unit: size limits are the file itself. */
    lim.stanza_bytes_cap = lim.stanza_bytes_max = (uint32_t)len + 1;
    if (mode == XF_XML_DOCUMENT) lim.header_bytes_max = (uint32_t)len + 1;
    size_t mem_len = xf_xml_mem_size(&lim);
    void *mem = malloc(mem_len);
    if (mem == NULL) return 2;
    xf_xml_tok tok;
    xf_xml_event ev;
    xf_xml_init(&tok, &lim, mode, mem, mem_len);
    xf_xml_feed(&tok, doc, len);
    xf_xml_event_type type;
    int ended = 0;
    while ((type = xf_xml_next(&tok, &ev)) != XF_XML_EV_NONE && type != XF_XML_EV_ERROR) {
        ended |= type == XF_XML_EV_STREAM_END;
    }
    if (type != XF_XML_EV_ERROR && mode == XF_XML_DOCUMENT) {
        while ((type = xf_xml_finish(&tok, &ev)) == XF_XML_EV_STREAM_END)
            ended = 1;
    }
    if (type != XF_XML_EV_ERROR && !ended) {
        type = xf_xml_finish(&tok, &ev);
    }
    int rc = 0;
    if (type == XF_XML_EV_ERROR) {
        printf("%s: %s%s at byte %llu (%s)\n", argv[arg], xf_xml_cond_name(ev.error.cond),
               ev.error.stanza_too_big ? " (stanza-too-big)" : "", (unsigned long long)ev.offset,
               ev.error.text);
        rc = 1;
    } else {
        printf("%s: ok\n", argv[arg]);
    }
    free(mem);
    free(doc);
    return rc;
}
