/*
 * The toolbox process API (daytona-api.md section 7.1-7.3): one-shot
 * execute, code-run and sessions (long-lived shells running commands one
 * after the other). Every call goes through the toolbox handle of
 * daytona.h, so it has the same headers, deadline (request_timeout_ms),
 * retries and cancellation hook as the file calls; a 409 "not started" (and
 * any 409 to a GET, which conflicts with nothing: a sandbox going down) is
 * EHOSTDOWN. Each function returns 0, or -errno with @err filled (404
 * ENOENT: no such session or command; 410 EPIPE: the session ended).
 */
#ifndef QUAVER_DT_PROCESS_H
#define QUAVER_DT_PROCESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daytona.h"

/* POST /process/execute and /process/code-run: {exitCode, result}. */
struct dt_exec_result {
	int exit_code;
	char *result; /* stdout and stderr combined; never NULL on success */
};
void dt_exec_result_clear(struct dt_exec_result *r);

/*
 * POST /process/execute {command, cwd?, envs?, timeout?}. @cwd NULL: the
 * daemon's; @timeout_s 0: none (the request still has its deadline).
 * A timeout the daemon enforces is 408: ETIMEDOUT.
 */
int dt_process_execute(struct dt_toolbox *tb, const char *command, const char *cwd,
		       const struct dt_kv *envs, size_t nenvs, int timeout_s,
		       struct dt_exec_result *out, struct dt_error *err);
/* POST /process/code-run {code, language, argv?, envs?, timeout?}; @language NULL: python. */
int dt_process_code_run(struct dt_toolbox *tb, const char *code, const char *language,
			const char *const *argv, size_t nargv, const struct dt_kv *envs,
			size_t nenvs, int timeout_s, struct dt_exec_result *out,
			struct dt_error *err);

/* ---- sessions ---- */

struct dt_session_command {
	char *id;
	char *command; /* "" when not sent */
	bool has_exit; /* false while the command runs */
	int exit_code;
};
void dt_session_command_clear(struct dt_session_command *c);

struct dt_session {
	char *id;
	struct dt_session_command *commands; /* in the server's order (oldest first) */
	size_t ncommands;
};
void dt_session_clear(struct dt_session *s);

struct dt_session_list {
	struct dt_session *items;
	size_t count;
};
void dt_session_list_clear(struct dt_session_list *l);

/* POST /process/session {sessionId}; an existing id: EEXIST. */
int dt_session_create(struct dt_toolbox *tb, const char *session_id, struct dt_error *err);
/* GET /process/session */
int dt_session_list(struct dt_toolbox *tb, struct dt_session_list *out, struct dt_error *err);
/* GET /process/session/{sid} */
int dt_session_get(struct dt_toolbox *tb, const char *session_id, struct dt_session *out,
		   struct dt_error *err);
/* DELETE /process/session/{sid}: kills its shell and whatever it runs. */
int dt_session_delete(struct dt_toolbox *tb, const char *session_id, struct dt_error *err);

struct dt_session_exec_result {
	char *cmd_id;
	bool has_exit; /* sync: the command's exit code (async: false) */
	int exit_code;
	char *output; /* sync: combined output as sent (may hold stream markers); else NULL */
	char *out;    /* sync: stdout, when the server split it; else NULL */
	char *err;    /* sync: stderr, likewise */
};
void dt_session_exec_result_clear(struct dt_session_exec_result *r);

/*
 * POST /process/session/{sid}/exec {command, runAsync}. Async (202) returns
 * at once with the command's id; its stdin stays open (dt_session_input).
 * Sync waits for the command within the request deadline.
 */
int dt_session_exec(struct dt_toolbox *tb, const char *session_id, const char *command, bool async,
		    struct dt_session_exec_result *out, struct dt_error *err);
/* GET /process/session/{sid}/command/{cid}: has_exit false while it runs. */
int dt_session_command_get(struct dt_toolbox *tb, const char *session_id, const char *cmd_id,
			   struct dt_session_command *out, struct dt_error *err);

/*
 * GET /process/session/{sid}/command/{cid}/logs as plain text: stdout and
 * stderr combined in the order they were written (the server is asked for
 * the text form, not the JSON one, so any size streams). The first @skip
 * bytes are dropped; the rest goes to @fn as it arrives (a nonzero return
 * from @fn stops the transfer and is returned). *@total (may be NULL): the
 * size of the whole log as sent. Streams: no overall deadline, a stall is
 * ETIMEDOUT (transfer_stall_ms).
 */
typedef int (*dt_logs_fn)(void *arg, const char *data, size_t len);
int dt_session_command_logs(struct dt_toolbox *tb, const char *session_id, const char *cmd_id,
			    int64_t skip, dt_logs_fn fn, void *arg, int64_t *total,
			    struct dt_error *err);
/* The same into a buffer (at most 64 MiB). */
int dt_session_command_logs_text(struct dt_toolbox *tb, const char *session_id, const char *cmd_id,
				 char **text, size_t *len, struct dt_error *err);

/*
 * POST /process/session/{sid}/command/{cid}/input {data}: bytes for the
 * stdin of an async command that runs. A finished command: EPIPE (410).
 * @data must be valid UTF-8 without NUL (JSON carries a string).
 */
int dt_session_input(struct dt_toolbox *tb, const char *session_id, const char *cmd_id,
		     const char *data, size_t len, struct dt_error *err);

/*
 * Splits a follow stream or a raw log with stream markers (01 01 01 before
 * stdout, 02 02 02 before stderr, cut anywhere between chunks). Feed the
 * bytes in order; @fn gets each piece with its stream (1 stdout, 2 stderr).
 */
struct dt_log_demux {
	int stream;   /* of the bytes now: 1 or 2; 0 before any marker (stdout) */
	char held[2]; /* the start of a maybe-marker cut by a chunk's end */
	size_t nheld;
};
typedef void (*dt_demux_fn)(void *arg, int stream, const char *data, size_t len);
void dt_log_demux_feed(struct dt_log_demux *d, const char *data, size_t len, dt_demux_fn fn,
		       void *arg);
/* The end of the stream: held bytes that began no marker are output. */
void dt_log_demux_end(struct dt_log_demux *d, dt_demux_fn fn, void *arg);

#endif
