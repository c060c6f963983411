/*
 * trace_internal.h - what trace.c needs from the exporter (not installed).
 */
#ifndef OBS_TRACE_INTERNAL_H
#define OBS_TRACE_INTERNAL_H

/* tracing.sample_ratio of the running exporter (0 when none). Any thread. */
double trace_internal_sample_ratio(void);

#endif
