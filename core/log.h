/* Log lines to stderr: "TIME LEVEL message". One fprintf per line, so lines
 * from different threads never interleave mid-line. */
#ifndef XF_LOG_H
#define XF_LOG_H

typedef enum { XF_LOG_DEBUG, XF_LOG_INFO, XF_LOG_WARN, XF_LOG_ERROR } xf_log_level;

void xf_log_set_level(xf_log_level min);
void xf_log(xf_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
