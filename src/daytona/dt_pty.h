/*
 * Terminals in a sandbox (daytona-api.md section 7.4): the PTY REST calls
 * (create, list, get, resize, kill) and a connection to a PTY's websocket
 * with its control frames. A PTY always runs the sandbox's login shell; it
 * is single-use (gone once the shell exits), and closing a connection does
 * not end it (kill does).
 *
 * The connection (dt_pty_connect) waits for {"status":"connected"}, hands
 * binary (and non-control text) frames to on_output, and calls on_end once:
 * with the exit code of the "exited" control frame, else of the close
 * reason ({"exitCode":N}), else 0 for a clean 1000 close (as the SDK does),
 * else as not exited (the connection dropped: quaverd killed, network gone,
 * closed 1008 for a slow consumer). Output that arrives after "exited" is
 * still delivered: on_end comes with the close.
 */
#ifndef QUAVER_DT_PTY_H
#define QUAVER_DT_PTY_H

#include <stdbool.h>
#include <stddef.h>

#include "daytona.h"
#include "dt_ws.h"

/* Daytona's limits: cols and rows 1..1000; the daemon reads 64 KiB per message. */
#define DT_PTY_MAX_DIM 1000
#define DT_PTY_SEND_CHUNK (32 * 1024)
/* How long the SDK waits for the "connected" control frame. */
#define DT_PTY_CONNECT_TIMEOUT_MS 10000

struct dt_pty_params {
	const char *id;	 /* required: 1..127 of [A-Za-z0-9._-] on quaverd */
	const char *cwd; /* NULL: the daemon's work dir */
	const struct dt_kv *envs;
	size_t nenvs;
	int cols, rows;	 /* 0: 80 x 24 */
	bool lazy_start; /* the shell starts at the first connect */
};

struct dt_pty_info {
	char *id;
	char *cwd;
	int cols, rows;
	bool active;
	bool lazy_start;
	char *created_at; /* may be NULL */
	struct dt_kv *envs;
	size_t nenvs;
};
void dt_pty_info_clear(struct dt_pty_info *i);

struct dt_pty_list {
	struct dt_pty_info *items;
	size_t count;
};
void dt_pty_list_clear(struct dt_pty_list *l);

/* Each returns 0 or -errno with @err (409 EEXIST for a taken id, 404 ENOENT, 400 EINVAL). */
int dt_pty_create(struct dt_toolbox *tb, const struct dt_pty_params *p, struct dt_error *err);
int dt_pty_list(struct dt_toolbox *tb, struct dt_pty_list *out, struct dt_error *err);
int dt_pty_get(struct dt_toolbox *tb, const char *id, struct dt_pty_info *out,
	       struct dt_error *err);
/* 410 (the shell has ended) is ESRCH. @out may be NULL. */
int dt_pty_resize(struct dt_toolbox *tb, const char *id, int cols, int rows,
		  struct dt_pty_info *out, struct dt_error *err);
/* Kills the shell and everything it started; attached clients get exit 137. */
int dt_pty_kill(struct dt_toolbox *tb, const char *id, struct dt_error *err);

/* How a connection ended. */
struct dt_pty_end {
	bool exited;	      /* the shell's exit is known */
	int exit_code;	      /* when exited */
	char exit_reason[64]; /* "SIGKILL", "Ctrl+C", "non-zero exit"...; "" when none */
	int close_code;	      /* the websocket's (1000, 1011, 1006 dropped, 1008 slow...) */
	char message[200];    /* a control "error" frame's text, or the close reason; "" */
};

struct dt_pty_handler {
	/* Service thread of the hub; must not block. */
	void (*on_output)(void *arg, const void *data, size_t len);
	/* Once, after the last output. Service thread; must not block. */
	void (*on_end)(void *arg, const struct dt_pty_end *end);
	/* Optional: the input queue went empty. Service thread; must not block. */
	void (*on_drain)(void *arg);
	/*
	 * Optional: the output of one read from the socket has all been given
	 * to on_output (dt_ws_handler.on_batch_end): wake readers here, once,
	 * rather than per piece. @flags and the hold returned: as
	 * dt_ws_handler.on_batch_end's. Service thread; must not block.
	 */
	long (*on_batch_end)(void *arg, unsigned flags);
};

struct dt_pty_conn;

/*
 * Connects to PTY @id (/process/pty/{id}/connect, offering
 * X-Daytona-Pty-Exit-Control) and waits (@timeout_ms, 0: 10 s) for the
 * "connected" frame. A PTY that has already ended answers with its exit at
 * once: 0 is returned and on_end follows. -errno with @err as dt_ws_connect.
 */
int dt_pty_connect(struct dt_ws_hub *hub, struct dt_toolbox *tb, const char *id,
		   const struct dt_pty_handler *h, void *arg, long timeout_ms,
		   struct dt_pty_conn **out, struct dt_error *err);
/* Keystrokes, in binary frames of at most DT_PTY_SEND_CHUNK. -EPIPE once it ended. */
int dt_pty_send(struct dt_pty_conn *pc, const void *data, size_t len);
/* dt_ws_pause_rx of the connection: output stops coming (the server queues it) or goes on. */
void dt_pty_pause_output(struct dt_pty_conn *pc, bool pause);
/* Input queued and not yet sent. */
size_t dt_pty_queued(struct dt_pty_conn *pc);
/*
 * Closes the connection (the shell goes on) and frees it. No callback runs
 * after it returns, so the caller must not hold a lock its handler takes.
 * May be called from the handler's own on_end.
 */
void dt_pty_disconnect(struct dt_pty_conn *pc);

#endif
