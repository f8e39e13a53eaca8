/* The Control Panel's static files, embedded in the binary by embed.cmake
 * (the generated panel_assets.c in the build folder). */
#ifndef XF_PANEL_ASSETS_H
#define XF_PANEL_ASSETS_H

#include <stddef.h>

typedef struct {
    const char *path; /* the URL path: "/" for index.html */
    const char *type; /* Content-Type */
    const unsigned char *data;
    size_t len;
} xf_panel_asset;

extern const xf_panel_asset xf_panel_assets[];
extern const size_t xf_panel_asset_count;

#endif
