/*
 * Terminals in sandboxes (pty.c, daytona-api.md section 7.4): PTY sessions
 * running the login shell as the sandbox user through the runtime's spawn
 * (process.h), their REST routes under /toolbox/{id}/process/pty and the
 * websockets /process/pty/{id}/connect and /process/pty/create-connect.
 *
 * A session is single-use: when its shell exits, every attached client gets
 * {"type":"control","status":"exited","exitCode":N[,"exitReason":..]} and a
 * close (1000 for exit code 0, else 1011) whose reason is the same JSON, and
 * the session is forgotten. Output goes to every attached client as binary
 * frames; each client's queue is bounded (ws.h), so one that stops reading
 * is closed with 1008 and the others go on.
 */
#ifndef QUAVERD_PTY_H
#define QUAVERD_PTY_H

#include <stdbool.h>
#include <stddef.h>

#include "http.h"
#include "store.h"
#include "ws.h"

struct tb_call;

/*
 * The REST routes process/pty and process/pty/... (c->route), on a worker,
 * for a started sandbox (toolbox.c routes them here, before process/).
 */
void tb_pty(struct tb_call *c);

/*
 * A websocket upgrade under /toolbox/ (@rest: "{sandbox_id}/process/pty/..."),
 * called by the ws routing (events.c) after the token was checked. 0 and
 * @acc filled, or an HTTP status with a sentence in @msg.
 */
int pty_ws_upgrade(struct store *st, const struct http_request *req, const char *rest,
		   const char *const *offered, size_t noffered, struct ws_accept *acc, char *msg,
		   size_t msg_size);

/* Kills every session of @sandbox_id (the sandbox stops) or of every sandbox (NULL). */
void pty_kill_all(const char *sandbox_id);

#endif
