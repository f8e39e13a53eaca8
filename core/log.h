/* Log lines to stderr: "TIME LEVEL message". One fprintf per line, so lines
 * from different threads never interleave mid-line. */
#ifndef XF_LOG_H
#define XF_LOG_H

#include <stdbool.h>

typedef enum { XF_LOG_DEBUG, XF_LOG_INFO, XF_LOG_WARN, XF_LOG_ERROR } xf_log_level;

void xf_log_set_level(xf_log_level min);
/* Whether a line at this level would be written (to skip building costly ones). */
bool xf_log_enabled(xf_log_level level);
void xf_log(xf_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
