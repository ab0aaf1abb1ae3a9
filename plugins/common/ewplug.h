/* ewplug: the small library shared by the in-tree plugins; include this one header. */
#ifndef EWPLUG_H
#define EWPLUG_H

#include "ewp_fmt.h"
#include "ewp_rng.h"
#include "ewp_stats.h"
#include "ewp_time.h"

#endif
