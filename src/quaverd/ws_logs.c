/*
 * Session command logs as a websocket (daytona-api.md 7.3):
 * /toolbox/{id}/process/session/{sid}/command/{cid}/logs?follow=true sends
 * the command's output as binary frames, each stdout piece after the marker
 * 01 01 01 and each stderr piece after 02 02 02, as it is logged, and closes
 * with 1000 once the command has finished and everything logged was sent.
 *
 * The log is the session module's record file (session.c: a stream byte, a
 * little-endian 32-bit length, the bytes), read from where this follower
 * left off by a thread of its own, which wakes every FOLLOW_POLL_MS.
 */
#define QUAVERD_RUNTIME_INTERNAL
#include "ws_logs.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "runtime.h"
#include "session_internal.h"
#include "util.h"

#define FOLLOW_POLL_MS 50
#define FRAME_MAX (64 * 1024)

struct follower {
	struct rt_instance *inst;
	struct session *s;
	struct session_cmd *cmd;
	struct ws_conn *conn;
	off_t offset;	 /* of the next record in the log */
	size_t rec_left; /* bytes of the current record still to send */
	int rec_stream;
};

static void follower_free(struct follower *f)
{
	if (f->cmd)
		session_unpin_cmd(f->s, f->cmd);
	if (f->s)
		session_put(f->s);
	if (f->inst)
		rt_instance_put(f->inst);
	if (f->conn)
		ws_conn_unref(f->conn);
	free(f);
}

/* Sends what was logged since the last call. 0, or <0 when the client is gone. */
static int send_new(struct follower *f, int fd, struct buf *frame)
{
	for (;;) {
		unsigned char hdr[5];
		ssize_t n;

		if (f->rec_left == 0) {
			n = pread(fd, hdr, sizeof(hdr), f->offset);
			if (n != (ssize_t)sizeof(hdr))
				break; /* the end, or a record being written */
			f->rec_stream = hdr[0];
			f->rec_left = hdr[1] | (size_t)hdr[2] << 8 | (size_t)hdr[3] << 16 |
				      (size_t)hdr[4] << 24;
			f->offset += (off_t)sizeof(hdr);
			if (f->rec_stream == SESSION_STDOUT || f->rec_stream == SESSION_STDERR) {
				const char *marker =
				    f->rec_stream == SESSION_STDOUT ? "\1\1\1" : "\2\2\2";

				if (buf_append(frame, marker, 3) < 0)
					return -ENOMEM;
			}
		}
		while (f->rec_left > 0) {
			char chunk[16384];
			size_t want = f->rec_left < sizeof(chunk) ? f->rec_left : sizeof(chunk);

			n = pread(fd, chunk, want, f->offset);
			if (n <= 0)
				goto out; /* not all written yet */
			if ((f->rec_stream == SESSION_STDOUT || f->rec_stream == SESSION_STDERR) &&
			    buf_append(frame, chunk, (size_t)n) < 0)
				return -ENOMEM;
			f->offset += n;
			f->rec_left -= (size_t)n;
			if (frame->len >= FRAME_MAX) {
				if (ws_send(f->conn, true, frame->data, frame->len) < 0)
					return -EPIPE;
				frame->len = 0;
			}
		}
	}
out:
	if (frame->len) {
		if (ws_send(f->conn, true, frame->data, frame->len) < 0)
			return -EPIPE;
		frame->len = 0;
	}
	return 0;
}

static void *follow_main(void *arg)
{
	struct follower *f = arg;
	struct buf frame = BUF_INIT;
	int fd = -1;

	for (;;) {
		bool done;

		pthread_mutex_lock(&f->s->lock);
		done = session_cmd_done(f->cmd) || f->s->ended;
		pthread_mutex_unlock(&f->s->lock);
		if (fd < 0)
			fd = open(f->cmd->log_path, O_RDONLY | O_CLOEXEC);
		if (fd >= 0 && send_new(f, fd, &frame) < 0)
			break;
		if (done) {
			/* the last records were logged before the command counted as done */
			if (fd >= 0 && send_new(f, fd, &frame) < 0)
				break;
			ws_close(f->conn, 1000, "");
			break;
		}
		if (!ws_open(f->conn))
			break;
		{
			struct timespec ts = {0, FOLLOW_POLL_MS * 1000000L};

			nanosleep(&ts, NULL);
		}
	}
	if (fd >= 0)
		close(fd);
	buf_free(&frame);
	follower_free(f);
	return NULL;
}

/* The handler's arg: lives until on_close, while the thread owns the follower. */
struct follow_link {
	struct follower *f; /* until on_open hands it to the thread */
};

static void follow_open(void *arg, struct ws_conn *conn)
{
	struct follow_link *link = arg;
	struct follower *f = link->f;
	pthread_attr_t attr;
	pthread_t thread;

	link->f = NULL;
	f->conn = conn;
	ws_conn_ref(conn);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&thread, &attr, follow_main, f) != 0) {
		ws_close(conn, 1011, "cannot follow the logs");
		follower_free(f);
	}
	pthread_attr_destroy(&attr);
}

static void follow_close(void *arg, struct ws_conn *conn)
{
	struct follow_link *link = arg;

	(void)conn;
	if (!link)
		return;
	if (link->f) /* never opened */
		follower_free(link->f);
	free(link);
}

static const struct ws_handler follow_handler = {
    .on_open = follow_open,
    .on_close = follow_close,
};

int ws_logs_upgrade(struct store *st, const char *sandbox_id, const char *session_id,
		    const char *command_id, struct ws_accept *acc, char *msg, size_t msg_size)
{
	struct runtime *rt = runtime_of(st);
	struct follower *f = calloc(1, sizeof(*f));
	struct follow_link *link;

	if (!f) {
		snprintf(msg, msg_size, "The server is out of memory.");
		return 500;
	}
	f->inst = rt ? rt_instance_get(rt, sandbox_id) : NULL;
	if (!f->inst) {
		free(f);
		snprintf(msg, msg_size, "Sandbox %s has no running processes", sandbox_id);
		return 409;
	}
	f->s = f->inst->sessions ? session_table_find(f->inst->sessions, session_id) : NULL;
	if (!f->s) {
		follower_free(f);
		snprintf(msg, msg_size, "session %s not found", session_id);
		return 404;
	}
	f->cmd = session_find_cmd(f->s, command_id);
	if (!f->cmd) {
		follower_free(f);
		snprintf(msg, msg_size, "command %s not found", command_id);
		return 404;
	}
	link = calloc(1, sizeof(*link));
	if (!link) {
		follower_free(f);
		snprintf(msg, msg_size, "The server is out of memory.");
		return 500;
	}
	link->f = f;
	acc->handler = &follow_handler;
	acc->arg = link;
	return 0;
}
