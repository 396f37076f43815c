/*
 * PTY sessions (pty.h).
 *
 * Threads. A session's shell output is read by its own reader thread, which
 * also writes the clients' keystrokes to the terminal (the service thread
 * only queues them and pokes an eventfd, so it never blocks on a shell that
 * does not read) and reports the exit. REST routes run on workers; websocket
 * callbacks on the lws service thread.
 *
 * The shell: the runtime starts processes in their own session but does not
 * give them a controlling terminal, and a shell without one has no job
 * control and ignores Ctrl-C. So the program run is util-linux's
 * `setsid -w -c SHELL -l -i` (from the sandbox's read-only /usr), which
 * makes the terminal the shell's controlling terminal and passes its exit
 * status on.
 *
 * Lifetime. A session is reference counted (table_lock): the table holds
 * one until the session ends or is deleted, each attached client one, the
 * reader thread one.
 */
#define QUAVERD_RUNTIME_INTERNAL
#define QUAVERD_TOOLBOX_INTERNAL
#include "pty.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "process.h"
#include "runtime.h"
#include "toolbox.h"
#include "util.h"

#define PTY_MAX_CLIENTS 32
#define PTY_READ_MAX (32 * 1024)
/* Keystrokes waiting for a shell that does not read; more are dropped. */
#define PTY_INPUT_MAX (1024 * 1024)
#define PTY_ID_MAX 127
#define PTY_SHELL "/bin/bash"
#define PTY_SETSID "/usr/bin/setsid"
#define ENVS_TOKEN "X-Daytona-Pty-Envs~"
#define EXIT_CONTROL_TOKEN "X-Daytona-Pty-Exit-Control"

struct pty_session;

struct pty_client {
	struct pty_session *s;
	struct ws_conn *conn;
};

struct pty_session {
	struct pty_session *next; /* table_lock */
	int refs;		  /* table_lock */
	bool listed;		  /* table_lock */
	struct store *store;
	char sandbox_id[STORE_ID_LEN + 1];
	char id[PTY_ID_MAX + 1];
	char cwd[PATH_MAX]; /* "" : the sandbox user's home */
	cJSON *envs;	    /* object of strings */
	bool lazy;
	int64_t created_ms;

	pthread_mutex_t lock; /* everything below */
	int cols, rows;
	bool started, ended, killed;
	int master, wake_fd;
	struct rt_proc proc;
	struct buf input;
	struct pty_client *clients[PTY_MAX_CLIENTS];
	size_t nclients;
	int exit_code;
	char exit_reason[32];
};

static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static struct pty_session *table;

/* ---- the table ------------------------------------------------------------------ */

static void session_put(struct pty_session *s)
{
	bool last;

	if (!s)
		return;
	pthread_mutex_lock(&table_lock);
	last = --s->refs == 0;
	pthread_mutex_unlock(&table_lock);
	if (!last)
		return;
	if (s->master >= 0)
		close(s->master);
	if (s->wake_fd >= 0)
		close(s->wake_fd);
	if (s->started)
		rt_proc_release(&s->proc);
	cJSON_Delete(s->envs);
	buf_free(&s->input);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

static struct pty_session *session_find(const char *sandbox_id, const char *id)
{
	struct pty_session *s;

	pthread_mutex_lock(&table_lock);
	for (s = table; s; s = s->next)
		if (!strcmp(s->sandbox_id, sandbox_id) && !strcmp(s->id, id))
			break;
	if (s)
		s->refs++;
	pthread_mutex_unlock(&table_lock);
	return s;
}

/* Takes @s out of the table (drops the table's reference). */
static void session_unlist(struct pty_session *s)
{
	bool was = false;

	pthread_mutex_lock(&table_lock);
	for (struct pty_session **pp = &table; *pp; pp = &(*pp)->next) {
		if (*pp == s) {
			*pp = s->next;
			was = s->listed;
			s->listed = false;
			break;
		}
	}
	pthread_mutex_unlock(&table_lock);
	if (was)
		session_put(s);
}

/*
 * A new listed session with a reference for the caller; NULL with -EEXIST
 * when the id is taken in this sandbox, -ENOMEM.
 */
static struct pty_session *session_new(struct store *st, const char *sandbox_id, const char *id,
				       const char *cwd, const cJSON *envs, int cols, int rows,
				       bool lazy, int *err)
{
	struct pty_session *s = calloc(1, sizeof(*s)), *other;

	*err = -ENOMEM;
	if (!s)
		return NULL;
	s->store = st;
	copy_str(s->sandbox_id, sizeof(s->sandbox_id), sandbox_id);
	copy_str(s->id, sizeof(s->id), id);
	copy_str(s->cwd, sizeof(s->cwd), cwd ? cwd : "");
	s->envs = envs ? cJSON_Duplicate(envs, true) : cJSON_CreateObject();
	s->cols = cols;
	s->rows = rows;
	s->lazy = lazy;
	s->created_ms = now_wall_ms();
	s->master = s->wake_fd = -1;
	pthread_mutex_init(&s->lock, NULL);
	s->refs = 2; /* the table's and the caller's */
	if (!s->envs) {
		pthread_mutex_destroy(&s->lock);
		free(s);
		return NULL;
	}
	pthread_mutex_lock(&table_lock);
	for (other = table; other; other = other->next)
		if (!strcmp(other->sandbox_id, sandbox_id) && !strcmp(other->id, id))
			break;
	if (other) {
		pthread_mutex_unlock(&table_lock);
		cJSON_Delete(s->envs);
		pthread_mutex_destroy(&s->lock);
		free(s);
		*err = -EEXIST;
		return NULL;
	}
	s->listed = true;
	s->next = table;
	table = s;
	pthread_mutex_unlock(&table_lock);
	*err = 0;
	return s;
}

/* ---- the shell and its reader ----------------------------------------------------- */

static void exit_json(const struct pty_session *s, bool control, char *out, size_t size)
{
	if (control && s->exit_reason[0])
		snprintf(out, size,
			 "{\"type\":\"control\",\"status\":\"exited\",\"exitCode\":%d,"
			 "\"exitReason\":\"%s\"}",
			 s->exit_code, s->exit_reason);
	else if (control)
		snprintf(out, size, "{\"type\":\"control\",\"status\":\"exited\",\"exitCode\":%d}",
			 s->exit_code);
	else if (s->exit_reason[0])
		snprintf(out, size, "{\"exitCode\":%d,\"exitReason\":\"%s\"}", s->exit_code,
			 s->exit_reason);
	else
		snprintf(out, size, "{\"exitCode\":%d}", s->exit_code);
}

/* Tells @conn how the shell ended and closes it. */
static void send_exit(const struct pty_session *s, struct ws_conn *conn)
{
	char control[160], reason[124];

	exit_json(s, true, control, sizeof(control));
	exit_json(s, false, reason, sizeof(reason));
	ws_send_text(conn, control);
	ws_close(conn, s->exit_code == 0 ? 1000 : 1011, reason);
}

static void broadcast(struct pty_session *s, const void *data, size_t len)
{
	struct ws_conn *conns[PTY_MAX_CLIENTS];
	size_t n;

	pthread_mutex_lock(&s->lock);
	n = s->nclients;
	for (size_t i = 0; i < n; i++) {
		conns[i] = s->clients[i]->conn;
		ws_conn_ref(conns[i]);
	}
	pthread_mutex_unlock(&s->lock);
	for (size_t i = 0; i < n; i++) {
		/* a full queue closes that client (1008); the others go on */
		ws_send(conns[i], true, data, len);
		ws_conn_unref(conns[i]);
	}
}

static void finish(struct pty_session *s)
{
	struct ws_conn *conns[PTY_MAX_CLIENTS];
	size_t n;

	pthread_mutex_lock(&s->lock);
	if (s->killed) {
		s->exit_code = 137;
		copy_str(s->exit_reason, sizeof(s->exit_reason), "SIGKILL");
	} else {
		s->exit_code = rt_proc_exit_code(&s->proc);
		if (s->exit_code == 0)
			s->exit_reason[0] = '\0';
		else if (s->exit_code == 128 + SIGINT || s->exit_code == 130)
			copy_str(s->exit_reason, sizeof(s->exit_reason), "Ctrl+C");
		else if (s->exit_code == 128 + SIGKILL)
			copy_str(s->exit_reason, sizeof(s->exit_reason), "SIGKILL");
		else if (s->exit_code == 128 + SIGTERM)
			copy_str(s->exit_reason, sizeof(s->exit_reason), "SIGTERM");
		else
			copy_str(s->exit_reason, sizeof(s->exit_reason), "non-zero exit");
	}
	s->ended = true;
	n = s->nclients;
	for (size_t i = 0; i < n; i++) {
		conns[i] = s->clients[i]->conn;
		ws_conn_ref(conns[i]);
	}
	pthread_mutex_unlock(&s->lock);
	if (s->exit_code < 0) {
		char why[256];

		rt_proc_failure(&s->proc, s->cwd[0] ? s->cwd : RT_HOME, PTY_SETSID, why,
				sizeof(why));
		log_warn("pty %s in sandbox %s: the shell could not start: %s", s->id,
			 s->sandbox_id, why);
	} else {
		log_debug("pty %s in sandbox %s: the shell exited with %d", s->id, s->sandbox_id,
			  s->exit_code);
	}
	/* single-use: forgotten once its shell is gone, before the clients hear of it */
	session_unlist(s);
	for (size_t i = 0; i < n; i++) {
		send_exit(s, conns[i]);
		ws_conn_unref(conns[i]);
	}
}

/* Writes what the clients typed, as far as the terminal takes it. Under s->lock. */
static void flush_input(struct pty_session *s)
{
	size_t done = 0;

	while (done < s->input.len) {
		ssize_t n = write(s->master, s->input.data + done, s->input.len - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		done += (size_t)n;
	}
	if (done == s->input.len) {
		s->input.len = 0;
	} else if (done) {
		memmove(s->input.data, s->input.data + done, s->input.len - done);
		s->input.len -= done;
	}
}

/*
 * Sends SIGKILL to the shell and whatever runs on its terminal. Under s->lock.
 * Right after the start this can miss: the process makes its own process
 * group only once running, and setsid's child takes the terminal a moment
 * later; so the reader repeats it until the shell is gone.
 */
static void signal_shell(struct pty_session *s)
{
	pid_t fg = -1, sid = -1;

	/* the shell has its own session (setsid -c): find it through the terminal */
	if (ioctl(s->master, TIOCGPGRP, &fg) == 0 && fg > 1)
		kill(-fg, SIGKILL);
	if (ioctl(s->master, TIOCGSID, &sid) == 0 && sid > 1) {
		kill(-sid, SIGHUP);
		kill(-sid, SIGKILL);
	}
	rt_proc_signal_group(&s->proc, SIGKILL);
	/* not yet a group of its own: its pid is pinned until its status is read */
	if (!s->proc.exited && s->proc.pid > 1)
		kill(s->proc.pid, SIGKILL);
}

static void *reader_main(void *arg)
{
	struct pty_session *s = arg;
	unsigned char *buf = malloc(PTY_READ_MAX);
	bool eof = false, exited = false, killed;
	int64_t exited_ms = 0;

	while (buf) {
		struct pollfd fds[3];
		int n;

		pthread_mutex_lock(&s->lock);
		fds[0] = (struct pollfd){.fd = eof ? -1 : s->master,
					 .events = (short)(POLLIN | (s->input.len ? POLLOUT : 0))};
		killed = s->killed;
		if (killed && !exited)
			signal_shell(s);
		pthread_mutex_unlock(&s->lock);
		fds[1] = (struct pollfd){.fd = s->wake_fd, .events = POLLIN};
		fds[2] = (struct pollfd){.fd = exited ? -1 : s->proc.status_fd, .events = POLLIN};
		n = poll(fds, 3, exited || killed ? 50 : -1);
		if (n < 0 && errno != EINTR)
			break;
		if (fds[1].revents & POLLIN) {
			uint64_t v;

			if (read(s->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
				break;
		}
		if (!eof) {
			pthread_mutex_lock(&s->lock);
			if (s->input.len)
				flush_input(s);
			pthread_mutex_unlock(&s->lock);
		}
		if (!eof && (fds[0].revents & (POLLIN | POLLHUP | POLLERR))) {
			size_t have = 0;

			/*
			 * A read of the master gives at most the line discipline's 4 KiB;
			 * read on while more is there, so a flood goes out in messages of
			 * up to PTY_READ_MAX (a client's queue counts messages), while a
			 * keystroke's echo still goes at once.
			 */
			while (have < PTY_READ_MAX) {
				ssize_t got = read(s->master, buf + have, PTY_READ_MAX - have);

				if (got > 0) {
					have += (size_t)got;
					continue;
				}
				if (got == 0 || (errno != EAGAIN && errno != EINTR))
					eof = true; /* EIO: no process holds the terminal */
				break;
			}
			if (have)
				broadcast(s, buf, have);
		}
		if (!exited && (fds[2].revents || s->proc.status_fd < 0) &&
		    rt_proc_poll(&s->proc)) {
			exited = true;
			exited_ms = now_mono_ms();
		}
		if (eof && !exited) {
			rt_proc_wait(&s->proc);
			exited = true;
			exited_ms = now_mono_ms();
		}
		/* the shell is gone: take what is still buffered, but do not wait for its children
		 */
		if (exited && (eof || now_mono_ms() - exited_ms > 200))
			break;
	}
	free(buf);
	finish(s);
	session_put(s);
	return NULL;
}

static void set_size(int fd, int cols, int rows)
{
	struct winsize ws = {.ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols};

	if (fd >= 0 && ioctl(fd, TIOCSWINSZ, &ws) < 0)
		log_debug("pty: TIOCSWINSZ: %s", strerror(errno));
}

/* Starts the shell (once). 0, or -errno with a sentence in @why. */
static int session_start(struct pty_session *s, char *why, size_t why_size)
{
	static const char *const argv[] = {PTY_SETSID, "-w", "-c", PTY_SHELL, "-l", "-i", NULL};
	struct runtime *rt = runtime_of(s->store);
	struct rt_instance *inst = NULL;
	struct rt_spawn req;
	char slave_name[128];
	char **envp = NULL;
	cJSON *extra = NULL;
	int master = -1, slave = -1, wake = -1, rc;
	pthread_t thread;
	pthread_attr_t attr;

	pthread_mutex_lock(&s->lock);
	if (s->started || s->ended) {
		pthread_mutex_unlock(&s->lock);
		return 0;
	}
	inst = rt ? rt_instance_get(rt, s->sandbox_id) : NULL;
	if (!inst) {
		snprintf(why, why_size,
			 "Sandbox %s has no running processes space (is it started?)",
			 s->sandbox_id);
		rc = -ESRCH;
		goto fail;
	}
	master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0 ||
	    ptsname_r(master, slave_name, sizeof(slave_name)) != 0 ||
	    (slave = open(slave_name, O_RDWR | O_NOCTTY | O_CLOEXEC)) < 0 ||
	    (wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
		rc = -errno;
		snprintf(why, why_size, "Cannot open a terminal: %s", strerror(errno));
		goto fail;
	}
	set_size(master, s->cols, s->rows);
	extra = cJSON_Duplicate(s->envs, true);
	if (extra && !cJSON_GetObjectItemCaseSensitive(extra, "TERM"))
		cJSON_AddStringToObject(extra, "TERM", "xterm-256color");
	envp = rt_instance_environ(inst, extra);
	if (!envp) {
		rc = -ENOMEM;
		snprintf(why, why_size, "Out of memory");
		goto fail;
	}
	req = (struct rt_spawn){
	    .argv = argv,
	    .envp = envp,
	    .cwd = s->cwd[0] ? s->cwd : NULL,
	    .stdin_fd = slave,
	    .stdout_fd = slave,
	    .stderr_fd = slave,
	};
	rc = rt_spawn(inst, &req, &s->proc, why, why_size);
	if (rc < 0)
		goto fail;
	close(slave);
	slave = -1;
	fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK);
	s->master = master;
	s->wake_fd = wake;
	s->started = true;
	pthread_mutex_unlock(&s->lock);

	pthread_mutex_lock(&table_lock);
	s->refs++; /* the reader's */
	pthread_mutex_unlock(&table_lock);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&thread, &attr, reader_main, s) != 0) {
		/* cannot watch it: kill it and report it as gone */
		log_error("pty %s: cannot start its reader thread", s->id);
		pthread_mutex_lock(&s->lock);
		s->killed = true;
		rt_proc_signal_group(&s->proc, SIGKILL);
		pthread_mutex_unlock(&s->lock);
		rt_proc_wait(&s->proc);
		finish(s);
		session_put(s);
	}
	pthread_attr_destroy(&attr);
	free(envp);
	cJSON_Delete(extra);
	rt_instance_put(inst);
	log_debug("pty %s in sandbox %s: shell started (%dx%d)", s->id, s->sandbox_id, s->cols,
		  s->rows);
	return 0;

fail:
	pthread_mutex_unlock(&s->lock);
	if (master >= 0)
		close(master);
	if (slave >= 0)
		close(slave);
	if (wake >= 0)
		close(wake);
	free(envp);
	cJSON_Delete(extra);
	if (inst)
		rt_instance_put(inst);
	return rc;
}

/* Kills the shell and whatever runs on its terminal; the reader reports exit 137. */
static void session_kill(struct pty_session *s)
{
	bool never_started;
	uint64_t one = 1;

	pthread_mutex_lock(&s->lock);
	s->killed = true;
	never_started = !s->started && !s->ended;
	if (s->started && !s->ended) {
		signal_shell(s);
		/* the reader repeats the kill until the shell is gone */
		if (write(s->wake_fd, &one, sizeof(one)) < 0)
			log_debug("pty %s: cannot wake the reader: %s", s->id, strerror(errno));
	}
	pthread_mutex_unlock(&s->lock);
	if (never_started)
		finish(s); /* lazy and never connected: nothing runs */
}

void pty_kill_all(const char *sandbox_id)
{
	for (;;) {
		struct pty_session *s;

		pthread_mutex_lock(&table_lock);
		for (s = table; s; s = s->next)
			if ((!sandbox_id || !strcmp(s->sandbox_id, sandbox_id)) && !s->killed)
				break;
		if (s)
			s->refs++;
		pthread_mutex_unlock(&table_lock);
		if (!s)
			return;
		session_kill(s);
		session_unlist(s);
		session_put(s);
	}
}

/* ---- websocket clients (service thread) -------------------------------------------- */

static void client_open(void *arg, struct ws_conn *conn)
{
	struct pty_client *cl = arg;
	struct pty_session *s = cl->s;
	char why[256] = "";
	bool full, ended;

	pthread_mutex_lock(&s->lock);
	ended = s->ended;
	full = s->nclients >= PTY_MAX_CLIENTS;
	if (!ended && !full) {
		cl->conn = conn;
		ws_conn_ref(conn);
		s->clients[s->nclients++] = cl;
		ws_send_text(conn, "{\"type\":\"control\",\"status\":\"connected\"}");
	}
	pthread_mutex_unlock(&s->lock);
	if (ended) {
		send_exit(s, conn);
		return;
	}
	if (full) {
		ws_close(conn, 1013, "too many clients on this terminal");
		return;
	}
	if (session_start(s, why, sizeof(why)) < 0) {
		cJSON *o = cJSON_CreateObject();
		char *text;

		cJSON_AddStringToObject(o, "type", "control");
		cJSON_AddStringToObject(o, "status", "error");
		cJSON_AddStringToObject(o, "error", why);
		text = cJSON_PrintUnformatted(o);
		if (text)
			ws_send_text(conn, text);
		free(text);
		cJSON_Delete(o);
		ws_close(conn, 1011, "the shell could not start");
		session_kill(s);
	}
}

static void client_message(void *arg, struct ws_conn *conn, bool binary, const void *data,
			   size_t len)
{
	struct pty_client *cl = arg;
	struct pty_session *s = cl->s;
	uint64_t one = 1;

	(void)conn;
	(void)binary;
	if (!len)
		return;
	pthread_mutex_lock(&s->lock);
	if (s->started && !s->ended) {
		if (s->input.len + len > PTY_INPUT_MAX)
			log_warn("pty %s: the shell is not reading; %zu bytes of input dropped",
				 s->id, len);
		else if (buf_append(&s->input, data, len) == 0 &&
			 write(s->wake_fd, &one, sizeof(one)) < 0)
			log_debug("pty %s: cannot wake the reader: %s", s->id, strerror(errno));
	}
	pthread_mutex_unlock(&s->lock);
}

static void client_close(void *arg, struct ws_conn *conn)
{
	struct pty_client *cl = arg;
	struct pty_session *s;

	(void)conn;
	if (!cl)
		return;
	s = cl->s;
	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < s->nclients; i++) {
		if (s->clients[i] == cl) {
			s->clients[i] = s->clients[--s->nclients];
			break;
		}
	}
	pthread_mutex_unlock(&s->lock);
	if (cl->conn)
		ws_conn_unref(cl->conn);
	free(cl);
	session_put(s); /* closing the socket does not end the shell */
}

static const struct ws_handler client_handler = {
    .on_open = client_open,
    .on_message = client_message,
    .on_close = client_close,
};

/* ---- the websocket routes ------------------------------------------------------------ */

/* Decodes unpadded (or padded) base64url into a NUL-terminated string; NULL when malformed. */
static char *b64url_decode(const char *in)
{
	size_t len = strlen(in), o = 0;
	char *out = malloc(len * 3 / 4 + 4);
	uint32_t acc = 0;
	int bits = 0;

	if (!out)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		char ch = in[i];
		int v;

		if (ch >= 'A' && ch <= 'Z')
			v = ch - 'A';
		else if (ch >= 'a' && ch <= 'z')
			v = ch - 'a' + 26;
		else if (ch >= '0' && ch <= '9')
			v = ch - '0' + 52;
		else if (ch == '-' || ch == '+')
			v = 62;
		else if (ch == '_' || ch == '/')
			v = 63;
		else if (ch == '=')
			break;
		else {
			free(out);
			return NULL;
		}
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (char)((acc >> bits) & 0xff);
		}
	}
	out[o] = '\0';
	return out;
}

static bool valid_pty_id(const char *id)
{
	size_t len = id ? strlen(id) : 0;

	if (len == 0 || len > PTY_ID_MAX)
		return false;
	for (const char *p = id; *p; p++)
		if (*p == '/' || (unsigned char)*p < 0x20)
			return false;
	return true;
}

/* The started sandbox @id (exact id); else a status and a sentence. */
static int check_sandbox(struct store *st, const char *id, char *msg, size_t msg_size)
{
	struct store_sandbox_info info;
	struct store_err err;
	int rc = store_sandbox_get(st, id, &info, &err);

	if (rc == 0 && strcmp(info.id, id)) {
		store_sandbox_info_free(&info);
		rc = -ENOENT;
	}
	if (rc < 0) {
		snprintf(msg, msg_size, "Sandbox with ID %s not found", id);
		return rc == -ENOENT ? 404 : 500;
	}
	if (strcmp(info.state, "started")) {
		snprintf(msg, msg_size, "Sandbox %s is not started (state: %s)", id, info.state);
		store_sandbox_info_free(&info);
		return 409;
	}
	store_sandbox_info_free(&info);
	store_touch(st, id);
	return 0;
}

static bool parse_size(const char *text, int dflt, int *out)
{
	int64_t v;

	if (!text || !*text) {
		*out = dflt;
		return true;
	}
	if (parse_int64(text, 1, 1000, &v) < 0)
		return false;
	*out = (int)v;
	return true;
}

int pty_ws_upgrade(struct store *st, const struct http_request *req, const char *rest,
		   const char *const *offered, size_t noffered, struct ws_accept *acc, char *msg,
		   size_t msg_size)
{
	char sandbox_id[STORE_ID_LEN + 1], pty_id[PTY_ID_MAX + 1];
	const char *route, *slash = strchr(rest, '/');
	struct pty_session *s = NULL;
	struct pty_client *cl;
	int status;

	if (!slash || (size_t)(slash - rest) > STORE_ID_LEN) {
		snprintf(msg, msg_size, "Cannot GET %s", req->path);
		return 404;
	}
	memcpy(sandbox_id, rest, (size_t)(slash - rest));
	sandbox_id[slash - rest] = '\0';
	route = slash + 1;

	if (!strcmp(route, "process/pty/create-connect")) {
		const char *id = http_param(req, "id");
		cJSON *envs = NULL;
		int cols, rows, err;

		if (!valid_pty_id(id)) {
			snprintf(msg, msg_size, "id is required (1 to %d characters, no '/')",
				 PTY_ID_MAX);
			return 400;
		}
		if (!parse_size(http_param(req, "cols"), 80, &cols) ||
		    !parse_size(http_param(req, "rows"), 24, &rows)) {
			snprintf(msg, msg_size, "cols and rows must be integers from 1 to 1000");
			return 400;
		}
		for (size_t i = 0; i < noffered; i++) {
			if (strncmp(offered[i], ENVS_TOKEN, strlen(ENVS_TOKEN)))
				continue;
			{
				char *text = b64url_decode(offered[i] + strlen(ENVS_TOKEN));

				envs = text ? cJSON_Parse(text) : NULL;
				free(text);
			}
			if (!cJSON_IsObject(envs)) {
				cJSON_Delete(envs);
				snprintf(msg, msg_size,
					 "The " ENVS_TOKEN " subprotocol must carry base64url JSON "
					 "(an object of strings)");
				return 400;
			}
		}
		status = check_sandbox(st, sandbox_id, msg, msg_size);
		if (status) {
			cJSON_Delete(envs);
			return status;
		}
		s = session_new(st, sandbox_id, id, http_param(req, "cwd"), envs, cols, rows, true,
				&err);
		cJSON_Delete(envs);
		if (!s) {
			if (err == -EEXIST) {
				snprintf(msg, msg_size, "PTY session with ID %s already exists",
					 id);
				return 409;
			}
			snprintf(msg, msg_size, "The server is out of memory.");
			return 500;
		}
	} else if (!strncmp(route, "process/pty/", 12)) {
		const char *p = route + 12, *end = strchr(p, '/');

		if (!end || strcmp(end, "/connect") || (size_t)(end - p) > PTY_ID_MAX) {
			snprintf(msg, msg_size, "Cannot GET %s", req->path);
			return 404;
		}
		memcpy(pty_id, p, (size_t)(end - p));
		pty_id[end - p] = '\0';
		status = check_sandbox(st, sandbox_id, msg, msg_size);
		if (status)
			return status;
		s = session_find(sandbox_id, pty_id);
		if (!s) {
			snprintf(msg, msg_size, "PTY session %s not found", pty_id);
			return 404;
		}
	} else {
		snprintf(msg, msg_size, "Cannot GET %s", req->path);
		return 404;
	}

	cl = calloc(1, sizeof(*cl));
	if (!cl) {
		session_put(s);
		snprintf(msg, msg_size, "The server is out of memory.");
		return 500;
	}
	cl->s = s; /* the client's reference */
	acc->handler = &client_handler;
	acc->arg = cl;
	for (size_t i = 0; i < noffered; i++)
		if (!strcmp(offered[i], EXIT_CONTROL_TOKEN))
			copy_str(acc->protocol, sizeof(acc->protocol), EXIT_CONTROL_TOKEN);
	return 0;
}

/* ---- the REST routes ----------------------------------------------------------------- */

static cJSON *session_info(struct pty_session *s)
{
	cJSON *o = cJSON_CreateObject();
	char when[32];

	if (!o)
		return NULL;
	iso8601_ms(s->created_ms, when);
	pthread_mutex_lock(&s->lock);
	cJSON_AddStringToObject(o, "id", s->id);
	cJSON_AddStringToObject(o, "cwd", s->cwd[0] ? s->cwd : RT_HOME);
	cJSON_AddItemToObject(o, "envs", cJSON_Duplicate(s->envs, true));
	cJSON_AddNumberToObject(o, "cols", s->cols);
	cJSON_AddNumberToObject(o, "rows", s->rows);
	cJSON_AddStringToObject(o, "createdAt", when);
	cJSON_AddBoolToObject(o, "active", s->started && !s->ended);
	cJSON_AddBoolToObject(o, "lazyStart", s->lazy);
	pthread_mutex_unlock(&s->lock);
	return o;
}

static cJSON *request_body(struct tb_call *c)
{
	cJSON *body;

	if (c->req->body_file || !c->req->body.len)
		return cJSON_CreateObject();
	body = cJSON_ParseWithLength(c->req->body.data, c->req->body.len);
	if (!cJSON_IsObject(body)) {
		cJSON_Delete(body);
		tb_error(c, 400, "BAD_REQUEST", "The request body must be a JSON object");
		return NULL;
	}
	return body;
}

/* cols/rows of a body: absent -> @dflt; false (400 sent) when not 1..1000. */
static bool body_size(struct tb_call *c, const cJSON *body, const char *key, int dflt, int *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, key);

	*out = dflt;
	if (!v || cJSON_IsNull(v))
		return true;
	if (!cJSON_IsNumber(v) || v->valuedouble != (double)(int)v->valuedouble ||
	    v->valuedouble < 1 || v->valuedouble > 1000) {
		tb_error(c, 400, "BAD_REQUEST", "%s must be an integer from 1 to 1000", key);
		return false;
	}
	*out = (int)v->valuedouble;
	return true;
}

static void pty_create(struct tb_call *c, const char *sandbox_id)
{
	cJSON *body = request_body(c), *reply;
	const cJSON *id, *cwd, *envs, *lazy;
	struct pty_session *s;
	char why[256];
	int cols, rows, err;

	if (!body)
		return;
	id = cJSON_GetObjectItemCaseSensitive(body, "id");
	cwd = cJSON_GetObjectItemCaseSensitive(body, "cwd");
	envs = cJSON_GetObjectItemCaseSensitive(body, "envs");
	lazy = cJSON_GetObjectItemCaseSensitive(body, "lazyStart");
	if (!cJSON_IsString(id) || !valid_pty_id(id->valuestring)) {
		tb_error(c, 400, "BAD_REQUEST", "id is required (1 to %d characters, no '/')",
			 PTY_ID_MAX);
		goto out;
	}
	if ((cwd && !cJSON_IsNull(cwd) && !cJSON_IsString(cwd)) ||
	    (envs && !cJSON_IsNull(envs) && !cJSON_IsObject(envs))) {
		tb_error(c, 400, "BAD_REQUEST", "cwd must be a string and envs an object");
		goto out;
	}
	for (const cJSON *e = cJSON_IsObject(envs) ? envs->child : NULL; e; e = e->next) {
		if (!cJSON_IsString(e) || !rt_env_key_valid(e->string)) {
			tb_error(c, 400, "BAD_REQUEST", "envs must map variable names to strings");
			goto out;
		}
	}
	if (!body_size(c, body, "cols", 80, &cols) || !body_size(c, body, "rows", 24, &rows))
		goto out;
	s = session_new(c->store, sandbox_id, id->valuestring,
			cJSON_IsString(cwd) ? cwd->valuestring : NULL,
			cJSON_IsObject(envs) ? envs : NULL, cols, rows, cJSON_IsTrue(lazy), &err);
	if (!s) {
		if (err == -EEXIST)
			tb_error(c, 409, "CONFLICT", "PTY session with ID %s already exists",
				 id->valuestring);
		else
			tb_error(c, 500, NULL, "Out of memory");
		goto out;
	}
	if (!s->lazy && session_start(s, why, sizeof(why)) < 0) {
		session_unlist(s);
		session_put(s);
		tb_error(c, 400, "BAD_REQUEST", "The shell could not start: %s", why);
		goto out;
	}
	session_put(s);
	reply = cJSON_CreateObject();
	cJSON_AddStringToObject(reply, "sessionId", id->valuestring);
	tb_json(c, 201, reply);
out:
	cJSON_Delete(body);
}

static void pty_list(struct tb_call *c, const char *sandbox_id)
{
	cJSON *reply = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(reply, "sessions");
	struct pty_session *found[256];
	size_t n = 0;

	pthread_mutex_lock(&table_lock);
	for (struct pty_session *s = table; s && n < ARRAY_SIZE(found); s = s->next) {
		if (strcmp(s->sandbox_id, sandbox_id))
			continue;
		s->refs++;
		found[n++] = s;
	}
	pthread_mutex_unlock(&table_lock);
	for (size_t i = 0; i < n; i++) {
		cJSON_AddItemToArray(arr, session_info(found[n - 1 - i]));
		session_put(found[n - 1 - i]);
	}
	tb_json(c, 200, reply);
}

void tb_pty(struct tb_call *c)
{
	const char *sandbox_id = c->view.sandbox_id, *route = c->route;
	const char *method = c->req->method;
	char pty_id[PTY_ID_MAX + 1];
	const char *p, *end, *action;
	struct pty_session *s;

	if (!strcmp(route, "process/pty")) {
		if (!strcmp(method, "POST"))
			pty_create(c, sandbox_id);
		else if (!strcmp(method, "GET") || !strcmp(method, "HEAD"))
			pty_list(c, sandbox_id);
		else
			tb_error(c, 405, NULL, "Cannot %s %s", method, c->req->path);
		return;
	}
	p = route + strlen("process/pty/");
	end = strchr(p, '/');
	action = end ? end + 1 : "";
	if ((size_t)((end ? end : p + strlen(p)) - p) > PTY_ID_MAX) {
		tb_error(c, 404, "NOT_FOUND", "PTY session not found");
		return;
	}
	copy_str(pty_id, (size_t)((end ? end : p + strlen(p)) - p) + 1, p);
	s = session_find(sandbox_id, pty_id);
	if (!s) {
		tb_error(c, 404, "NOT_FOUND", "PTY session %s not found", pty_id);
		return;
	}
	if (!*action && (!strcmp(method, "GET") || !strcmp(method, "HEAD"))) {
		tb_json(c, 200, session_info(s));
	} else if (!*action && !strcmp(method, "DELETE")) {
		cJSON *reply = cJSON_CreateObject();
		char text[PTY_ID_MAX + 64];

		session_kill(s);
		session_unlist(s);
		snprintf(text, sizeof(text), "PTY session %s terminated", pty_id);
		cJSON_AddStringToObject(reply, "message", text);
		tb_json(c, 200, reply);
	} else if (!strcmp(action, "resize") && !strcmp(method, "POST")) {
		cJSON *body = request_body(c);
		int cols, rows;
		bool inactive;

		if (body && body_size(c, body, "cols", -1, &cols) &&
		    body_size(c, body, "rows", -1, &rows)) {
			pthread_mutex_lock(&s->lock);
			inactive = s->ended || (!s->started && !s->lazy);
			if (!inactive) {
				if (cols > 0)
					s->cols = cols;
				if (rows > 0)
					s->rows = rows;
				if (s->started)
					set_size(s->master, s->cols, s->rows);
			}
			pthread_mutex_unlock(&s->lock);
			if (inactive)
				tb_error(c, 410, "GONE", "PTY session %s is not active", pty_id);
			else
				tb_json(c, 200, session_info(s));
		}
		cJSON_Delete(body);
	} else {
		tb_error(c, 404, "NOT_FOUND", "Cannot %s %s", method, c->req->path);
	}
	session_put(s);
}
