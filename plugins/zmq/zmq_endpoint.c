/* zmq_endpoint: the endpoint check shared by the zmq source and sink. */
#include "zmq_endpoint.h"

#include <stdio.h>
#include <string.h>

int zmq_endpoint_check(const char *endpoint, const char *example, char *err, size_t errlen)
{
    if (strncmp(endpoint, "tcp://", 6) == 0 || strncmp(endpoint, "ipc://", 6) == 0)
        return 0;
    snprintf(err, errlen, "option endpoint: \"%s\" is not a tcp:// or ipc:// address (e.g. %s)", endpoint,
             example);
    return -1;
}
