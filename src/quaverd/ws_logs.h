/*
 * The websocket that follows a session command's logs (ws_logs.c,
 * daytona-api.md 7.3): binary frames with the 01 01 01 (stdout) and
 * 02 02 02 (stderr) markers, closed with 1000 when the command has ended.
 */
#ifndef QUAVERD_WS_LOGS_H
#define QUAVERD_WS_LOGS_H

#include <stddef.h>

#include "store.h"
#include "ws.h"

/*
 * An upgrade of .../process/session/{session_id}/command/{command_id}/logs
 * (token and started sandbox already checked). 0 with @acc filled, or an
 * HTTP status with a sentence in @msg.
 */
int ws_logs_upgrade(struct store *st, const char *sandbox_id, const char *session_id,
		    const char *command_id, struct ws_accept *acc, char *msg, size_t msg_size);

#endif
