/*
 * Terminals of sandboxes (fs-layout.md, Terminals): the core behind the
 * `pty` node and `terminals/`. It knows nothing of FUSE: ops_terms.c wires
 * it to the kernel.
 *
 * A terminal this mount is attached to has one websocket (dt_pty.h) whose
 * output is drained at once, whoever reads, into a bounded ring of
 * TERMS_RING bytes per terminal: a reader that falls behind loses the
 * oldest unread bytes (counted and logged), never the websocket, and never
 * slows any other terminal. Input goes out through the websocket's queue;
 * past TERMS_INPUT_MAX queued bytes a writer waits.
 *
 * Waiting. Nothing here blocks on a terminal: a read that finds nothing
 * returns -EAGAIN and, given a waiter, queues it; when the terminal changes
 * (output, end, room for input) every queued waiter is taken off and handed
 * to ops->wake, which tries again. Poll handles are kept per handle and
 * given to ops->poll_notify on the next change.
 */
#ifndef QUAVERFS_TERMS_H
#define QUAVERFS_TERMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daytona.h"

/* Unread output kept per terminal; older bytes are dropped. */
#define TERMS_RING (1024 * 1024)
/*
 * While a flood goes on (output in pieces of TERMS_FLOOD_PIECE or more),
 * readers are woken once TERMS_WAKE_BATCH is kept, or TERMS_HOLD_US after
 * the output they wait for came, whichever is first.
 */
#define TERMS_WAKE_BATCH (256 * 1024)
#define TERMS_FLOOD_PIECE (16 * 1024)
#define TERMS_HOLD_US 2000
/*
 * A reader that falls TERMS_PAUSE_AT behind pauses the websocket (the
 * server queues the output) for at most TERMS_PAUSE_MS, until it is back
 * to TERMS_RESUME_AT; only then are the oldest bytes dropped. One pause
 * per falling behind: a reader must take output before the next one, so
 * a reader that stops costs a single pause, never the server's 1008.
 */
#define TERMS_PAUSE_AT (TERMS_RING - 256 * 1024)
#define TERMS_RESUME_AT (TERMS_RING / 2)
#define TERMS_PAUSE_MS 20
/* Input queued for the websocket before a writer waits. */
#define TERMS_INPUT_MAX (1024 * 1024)
/* Ended terminals kept (with their exit code and unread output) until rmdir, at most. */
#define TERMS_KEEP_ENDED 64
/* Terminal names: Daytona PTY ids as quaverd takes them. */
#define TERMS_NAME_MAX 128
#define TERMS_ENV_MAX 64

struct qfs;
struct terms;
struct term;

/* The nodes of a terminal's directory, and the pty node. */
enum terms_node {
	TN_NONE = 0,
	TN_DATA,
	TN_SIZE,
	TN_EXIT,
	TN_ENV,
	TN_PTY, /* sandboxes/NAME/pty: a handle of its own terminal */
};

/* A parked operation, embedded in the FUSE side's record of it. */
struct terms_waiter {
	struct terms_waiter *next;
	bool queued;
};

struct terms_ops {
	/* @w was taken off its queue: try again. No lock of the core is held. */
	void (*wake)(void *arg, struct terms_waiter *w);
	/* Tell the kernel a polled handle changed, and free @ph. */
	void (*poll_notify)(void *arg, void *ph);
	/* Free @ph unused. */
	void (*poll_free)(void *arg, void *ph);
	void *arg;
};

int terms_new(struct qfs *fs, const struct terms_ops *ops, struct terms **out,
	      struct dt_error *err);
/* Disconnects every terminal; kills the shells of pty handles still open. */
void terms_free(struct terms *t);

/* ---- terminals/ ---- */

/* The names in terminals/ of sandbox @sb_id: the backend's list and this mount's own. */
int terms_list(struct terms *t, const char *sb_id, char ***names, size_t *n, struct dt_error *err);
void terms_names_free(char **names, size_t n);
/* 0 when terminals/@name exists, -ENOENT when not. */
int terms_exists(struct terms *t, const char *sb_id, const char *name, struct dt_error *err);
/* A new terminal (not started yet: see terms_open). EEXIST, EINVAL for a bad name. */
int terms_mkdir(struct terms *t, const char *sb_id, const char *sb_name, const char *name,
		struct dt_error *err);
/* Kills the shell and forgets the terminal; its readers get EOF. */
int terms_rmdir(struct terms *t, const char *sb_id, const char *name, struct dt_error *err);
/* A name mkdir takes: 1-127 of [A-Za-z0-9._-], starting with a letter or digit. */
bool terms_valid_name(const char *name);

/* ---- handles ---- */

struct terms_handle;

/*
 * Opens node @node of terminals/@name (@name NULL and TN_PTY: a new
 * terminal for this handle alone, named from @tid, the opener's thread id;
 * killed at release). Opening data or exit starts a terminal not started
 * yet and attaches to it. @flags are open(2)'s.
 */
int terms_open(struct terms *t, const char *sb_id, const char *sb_name, const char *name,
	       enum terms_node node, int flags, uint32_t tid, struct terms_handle **out,
	       struct dt_error *err);
void terms_release(struct terms_handle *h);
enum terms_node terms_handle_node(const struct terms_handle *h);
/* The terminal's name ("" for a read-only pty handle, which has none). */
const char *terms_handle_name(const struct terms_handle *h);

/*
 * Reads at most @size bytes into @buf: 0 with *@got > 0, or 0 with *@got 0
 * at the end (EOF); -EAGAIN when nothing is there yet (with @w: queued, and
 * woken on the next change); -EINTR when @w was cancelled; -EIO when the
 * connection dropped before the shell's exit was known. For size, exit and
 * env the whole value is made at the first read of the handle and read
 * from there (@off is the offset of those).
 */
int terms_read(struct terms_handle *h, char *buf, size_t size, int64_t off, size_t *got,
	       struct terms_waiter *w, struct dt_error *err);
/*
 * Writes keystrokes (data, pty) or a value (size: "cols rows"; env:
 * "K=V" lines). -EAGAIN when the input queue is full (with @w: queued);
 * -EIO after the shell ended.
 */
int terms_write(struct terms_handle *h, const char *buf, size_t len, struct terms_waiter *w,
		struct dt_error *err);
/* Takes @w off its queue: true when it was queued; otherwise marks it cancelled. */
bool terms_cancel(struct terms_handle *h, struct terms_waiter *w);
/*
 * POLLIN/POLLOUT/POLLHUP now. @ph (may be NULL) is the core's from here on:
 * kept until the next change (then ops->poll_notify) or freed (ops->poll_free).
 */
unsigned terms_poll(struct terms_handle *h, void *ph);

#endif
