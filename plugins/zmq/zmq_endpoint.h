/* zmq_endpoint: the endpoint check shared by the zmq source and sink. */
#ifndef EW_ZMQ_ENDPOINT_H
#define EW_ZMQ_ENDPOINT_H

#include <stddef.h>

/* Accepts tcp:// and ipc:// endpoints; otherwise returns -1 with a message in err
 * that quotes `endpoint` and shows `example` (a valid endpoint for this plugin). */
int zmq_endpoint_check(const char *endpoint, const char *example, char *err, size_t errlen);

#endif
