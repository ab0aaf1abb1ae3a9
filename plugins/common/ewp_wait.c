/* ewp_wait: bounded waiting for a flag set by a plugin's own worker thread. */
#include "ewp_wait.h"

#include <time.h>

#define S_STEP_NS 5000000L /* 5 ms: a stop is not held up by the polling */

bool ewp_wait_flag(const atomic_bool *flag, int64_t max_ns)
{
    for (int64_t waited = 0;; waited += S_STEP_NS) {
        if (atomic_load_explicit(flag, memory_order_acquire))
            return true;
        if (waited >= max_ns)
            return false;
        struct timespec step = {0, S_STEP_NS};
        nanosleep(&step, NULL);
    }
}
