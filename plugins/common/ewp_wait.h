/* ewp_wait: bounded waiting for a flag set by a plugin's own worker thread. */
#ifndef EWP_WAIT_H
#define EWP_WAIT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* How long a detector waits, when the pipeline is stopping, for a model that
 * is being learnt before it abandons the training: short next to the default
 * shutdown_timeout (10 s), long enough for the usual small trainings. */
#define EWP_STOP_GRACE_NS 1000000000LL

/* Waits until *flag is true (acquire), for at most max_ns; returns its value. */
bool ewp_wait_flag(const atomic_bool *flag, int64_t max_ns);

#endif
