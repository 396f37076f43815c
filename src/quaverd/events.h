/*
 * quaverd's websocket routes and the socket.io event stream (events.c,
 * daytona-api.md section 9.3): the SDK's background connection at
 * /api/socket.io/?EIO=4&transport=websocket gets the Engine.IO handshake,
 * keep-alive pings and "sandbox.state.updated" (and volume and snapshot)
 * events whenever the store changes an object's state.
 */
#ifndef QUAVERD_EVENTS_H
#define QUAVERD_EVENTS_H

#include "store.h"
#include "ws.h"

struct events;

/* Hooks into @st's state changes and starts the events thread. NULL on ENOMEM. */
struct events *events_new(struct store *st, const char *token);
/* "http://127.0.0.1:PORT" as the api gets it: the DTOs' toolboxProxyUrl. */
void events_set_public_base(struct events *ev, const char *base);
/* Every websocket route (ws.h), with the events as ctx. */
const struct ws_ops *events_ws_ops(void);
/* Stops the thread and closes every client: call before http_server_stop. */
void events_stop(struct events *ev);
/* After store_close: the store's hook points here until then. */
void events_free(struct events *ev);

#endif
