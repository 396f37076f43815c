/*
 * Private to session*.c: the records of sessions and commands.
 */
#ifndef QUAVERD_SESSION_INTERNAL_H
#define QUAVERD_SESSION_INTERNAL_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "process.h"
#include "session.h"

enum { SESSION_STDOUT = 0, SESSION_STDERR = 1, SESSION_STATUS = 2 };

struct session_cmd {
	char id[37];
	char *command;
	bool async;
	bool begun[2];	/* its start marker was seen on stdout / stderr */
	bool ended[2];	/* its end marker was seen */
	bool finalized; /* ended by the shell's exit or the session's end */
	bool has_exit;
	int exit_code;
	char log_path[PATH_MAX];
	uint64_t logged; /* bytes of output logged */
	bool truncated;
	int pins; /* callers using it: not forgotten meanwhile */
};

static inline bool session_cmd_done(const struct session_cmd *cmd)
{
	return cmd->finalized || (cmd->ended[0] && cmd->ended[1]);
}

struct session;

/* One descriptor in the pump's epoll set. */
struct session_src {
	struct session *session;
	int kind; /* SESSION_STDOUT, SESSION_STDERR, SESSION_STATUS */
};

/*
 * A session. Its fields are under @lock, except what only the pump touches
 * (fds, pending) and stdin_fd (under write_lock). References: the table's,
 * the pump's (until its three descriptors are done), and callers'.
 */
struct session {
	pthread_mutex_t lock;
	pthread_cond_t cv; /* a command finished, or the session ended */
	int refs;
	char id[SESSION_ID_MAX + 1];
	struct session_pump *pump;
	struct rt_proc shell;
	pthread_mutex_t write_lock;
	int stdin_fd; /* the shell's stdin (commands, and input of async commands) */
	int fds[2];   /* its stdout and stderr */
	struct session_src src[3];
	int open_sources;
	struct session *release_next; /* the pump's list of references to drop */
	char token[17];
	struct session_cmd **cmds;
	size_t ncmds, cap;
	struct session_cmd *cur[2]; /* the command each stream is in */
	struct session_cmd *last;   /* the latest command started */
	struct buf pending[2];	    /* stream bytes that may begin a marker */
	bool ended;		    /* the shell exited, or the session was deleted */
};

struct session_table {
	struct rt_instance *inst;
	pthread_mutex_t lock;
	struct session **items;
	size_t n, cap;
};

void session_get(struct session *s);
void session_put(struct session *s);

/* Starts a session's shell in @inst; NULL with a sentence in @why. */
struct session *session_start(struct rt_instance *inst, struct session_pump *pump, const char *id,
			      char *why, size_t why_size);
/* Kills the shell's process group and closes its stdin; waiters wake. */
void session_end(struct session *s);
/* Writes to the shell's stdin. 0 or -errno (-EPIPE: the shell is gone). */
int session_write_input(struct session *s, const char *data, size_t len);

/* Sends a command (returned pinned); NULL with *err (-EPIPE when the session ended). */
struct session_cmd *session_submit(struct session *s, const char *command, bool async, int *err);
/* Blocks until the command finished (or the session ended for good). */
void session_wait_cmd(struct session *s, struct session_cmd *cmd);
/* A command by id, pinned (kept while the caller uses it); NULL when unknown. */
struct session_cmd *session_find_cmd(struct session *s, const char *id);
void session_unpin_cmd(struct session *s, struct session_cmd *cmd);
/* Reads a command's log so far into any of the three buffers (NULL: not wanted). */
int session_cmd_read(const struct session_cmd *cmd, struct buf *out, struct buf *err,
		     struct buf *combined);

/* The table: lookups take a reference. */
struct session *session_table_find(struct session_table *t, const char *id);
/* -EEXIST (the id is taken), -ENOSPC (too many sessions). */
int session_table_add(struct session_table *t, struct session *s);
/* Takes it out; returns it with the table's reference (NULL when unknown). */
struct session *session_table_remove(struct session_table *t, const char *id);
/* Every session, each with a reference; *out is malloc'd. */
size_t session_table_snapshot(struct session_table *t, struct session ***out);

/* The pump's runtime (for the instance lookups of the routes). */
struct runtime *session_pump_runtime(struct session_pump *p);

#endif
