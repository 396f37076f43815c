/*
 * Sessions (session.h): the long-lived shells, the pump that cuts their
 * output into commands, and the command logs.
 */
#define QUAVERD_RUNTIME_INTERNAL
#include "session.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "log.h"
#include "process.h"
#include "runtime.h"
#include "session_internal.h"
#include "util.h"

#define MARK 0x1e
#define TOKEN_LEN 16
/* A marker: MARK TOKEN kind(B|E) ID [":" CODE] MARK */
#define MARK_BODY_MAX (36 + 1 + 12)
#define MARK_MAX (1 + TOKEN_LEN + 1 + MARK_BODY_MAX + 1)
/* How much the pump reads from one stream before looking at the others. */
#define PUMP_SLICE (1 << 20)

struct session_pump {
	struct runtime *rt;
	pthread_t thread;
	int epfd;
	int wake_fd;
	char dir[PATH_MAX]; /* command logs */
	pthread_mutex_t lock;
	uint64_t serial;
	bool stop;
	/* Sessions whose pump reference goes once the current batch of events is handled. */
	struct session *release;
};

struct runtime *session_pump_runtime(struct session_pump *p)
{
	return p->rt;
}

/* ---- references --------------------------------------------------------------- */

static void cmd_free(struct session_cmd *cmd)
{
	if (!cmd)
		return;
	if (cmd->log_path[0])
		unlink(cmd->log_path);
	free(cmd->command);
	free(cmd);
}

static void session_free(struct session *s)
{
	for (size_t i = 0; i < s->ncmds; i++)
		cmd_free(s->cmds[i]);
	free(s->cmds);
	buf_free(&s->pending[0]);
	buf_free(&s->pending[1]);
	rt_proc_release(&s->shell);
	if (s->stdin_fd >= 0)
		close(s->stdin_fd);
	pthread_mutex_destroy(&s->lock);
	pthread_mutex_destroy(&s->write_lock);
	pthread_cond_destroy(&s->cv);
	free(s);
}

void session_get(struct session *s)
{
	pthread_mutex_lock(&s->lock);
	s->refs++;
	pthread_mutex_unlock(&s->lock);
}

void session_put(struct session *s)
{
	bool last;

	pthread_mutex_lock(&s->lock);
	last = --s->refs == 0;
	pthread_mutex_unlock(&s->lock);
	if (last)
		session_free(s);
}

/* ---- command logs ------------------------------------------------------------- */

/* Appends one record (stream, length, bytes) to the command's log. s->lock held. */
static void log_append(struct session_cmd *cmd, int stream, const char *data, size_t len)
{
	static const char note[] = "\n[quaverd: output truncated]\n";
	unsigned char hdr[5];
	struct iovec iov[2];
	int fd;

	if (cmd->truncated || len == 0)
		return;
	if (cmd->logged + len > PROCESS_OUTPUT_MAX) {
		len = (size_t)(PROCESS_OUTPUT_MAX - cmd->logged);
		cmd->truncated = true;
	}
	fd = open(cmd->log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return;
	for (int pass = 0; pass < 2; pass++) {
		const char *p = pass ? note : data;
		size_t n = pass ? sizeof(note) - 1 : len;

		if (pass && !cmd->truncated)
			break;
		hdr[0] = (unsigned char)(pass ? SESSION_STDERR : stream);
		hdr[1] = (unsigned char)(n & 0xff);
		hdr[2] = (unsigned char)((n >> 8) & 0xff);
		hdr[3] = (unsigned char)((n >> 16) & 0xff);
		hdr[4] = (unsigned char)((n >> 24) & 0xff);
		iov[0] = (struct iovec){hdr, sizeof(hdr)};
		iov[1] = (struct iovec){(void *)p, n};
		if (writev(fd, iov, 2) != (ssize_t)(sizeof(hdr) + n))
			break;
	}
	close(fd);
	cmd->logged += len;
}

int session_cmd_read(const struct session_cmd *cmd, struct buf *out, struct buf *err,
		     struct buf *combined)
{
	unsigned char hdr[5];
	char *chunk = NULL;
	int fd, rc = 0;

	fd = open(cmd->log_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	chunk = malloc(1 << 16);
	if (!chunk) {
		close(fd);
		return -ENOMEM;
	}
	for (;;) {
		size_t len;
		ssize_t n = read(fd, hdr, sizeof(hdr));

		if (n != (ssize_t)sizeof(hdr))
			break; /* the end, or a record being written */
		len = hdr[1] | (size_t)hdr[2] << 8 | (size_t)hdr[3] << 16 | (size_t)hdr[4] << 24;
		while (len > 0) {
			size_t want = len < (1 << 16) ? len : (1 << 16);

			n = read(fd, chunk, want);
			if (n <= 0)
				goto done;
			if (combined && buf_append(combined, chunk, (size_t)n) < 0)
				rc = -ENOMEM;
			if (hdr[0] == SESSION_STDOUT && out &&
			    buf_append(out, chunk, (size_t)n) < 0)
				rc = -ENOMEM;
			if (hdr[0] == SESSION_STDERR && err &&
			    buf_append(err, chunk, (size_t)n) < 0)
				rc = -ENOMEM;
			len -= (size_t)n;
		}
	}
done:
	free(chunk);
	close(fd);
	return rc;
}

/* ---- cutting the streams at the markers ----------------------------------------- */

static struct session_cmd *find_cmd_locked(struct session *s, const char *id, size_t len)
{
	for (size_t i = s->ncmds; i-- > 0;)
		if (strlen(s->cmds[i]->id) == len && !memcmp(s->cmds[i]->id, id, len))
			return s->cmds[i];
	return NULL;
}

static void emit(struct session *s, int stream, const char *data, size_t len)
{
	/* Output of a command's leftover background jobs goes to the latest command. */
	struct session_cmd *cmd = s->cur[stream] ? s->cur[stream] : s->last;

	if (cmd && len)
		log_append(cmd, stream, data, len);
}

enum { MARK_NEED_MORE, MARK_NOT, MARK_DONE };

/* Looks at a candidate marker at @p (p[0] == MARK). */
static int take_marker(struct session *s, int stream, const char *p, size_t avail, size_t *used)
{
	size_t head = 1 + TOKEN_LEN + 1, body_len;
	const char *body, *end, *colon;
	struct session_cmd *cmd;

	if (avail < head)
		return memcmp(p + 1, s->token, avail - 1) ? MARK_NOT : MARK_NEED_MORE;
	if (memcmp(p + 1, s->token, TOKEN_LEN) || (p[head - 1] != 'B' && p[head - 1] != 'E'))
		return MARK_NOT;
	body = p + head;
	end =
	    memchr(body, MARK, avail - head < MARK_BODY_MAX + 1 ? avail - head : MARK_BODY_MAX + 1);
	if (!end)
		return avail - head <= MARK_BODY_MAX ? MARK_NEED_MORE : MARK_NOT;
	body_len = (size_t)(end - body);
	colon = memchr(body, ':', body_len);
	cmd = find_cmd_locked(s, body, colon ? (size_t)(colon - body) : body_len);
	*used = head + body_len + 1;
	if (!cmd)
		return MARK_DONE; /* a command already forgotten */
	if (p[head - 1] == 'B') {
		s->cur[stream] = cmd;
		s->last = cmd;
		cmd->begun[stream] = true;
		return MARK_DONE;
	}
	if (colon && stream == SESSION_STDOUT) {
		char code[16];
		size_t cl = body_len - (size_t)(colon - body) - 1;

		if (cl < sizeof(code)) {
			memcpy(code, colon + 1, cl);
			code[cl] = '\0';
			cmd->exit_code = atoi(code);
			cmd->has_exit = true;
		}
	}
	cmd->ended[stream] = true;
	if (s->cur[stream] == cmd)
		s->cur[stream] = NULL;
	if (session_cmd_done(cmd))
		pthread_cond_broadcast(&s->cv);
	return MARK_DONE;
}

/* Feeds bytes read from @stream. s->lock held. */
static void stream_feed(struct session *s, int stream, const char *data, size_t len)
{
	struct buf *pb = &s->pending[stream];
	size_t pos = 0;

	if (buf_append(pb, data, len) < 0)
		return;
	while (pos < pb->len) {
		char *start = pb->data + pos;
		char *mark = memchr(start, MARK, pb->len - pos);
		size_t used = 0;
		int r;

		if (!mark) {
			emit(s, stream, start, pb->len - pos);
			pos = pb->len;
			break;
		}
		if (mark > start) {
			emit(s, stream, start, (size_t)(mark - start));
			pos = (size_t)(mark - pb->data);
		}
		r = take_marker(s, stream, mark, pb->len - pos, &used);
		if (r == MARK_NEED_MORE)
			break;
		if (r == MARK_NOT) {
			emit(s, stream, mark, 1);
			pos++;
			continue;
		}
		pos += used;
	}
	memmove(pb->data, pb->data + pos, pb->len - pos);
	pb->len -= pos;
	pb->data[pb->len] = '\0';
}

/* The shell is gone: every command it did not finish ends now. s->lock held. */
static void finish_commands_locked(struct session *s)
{
	int code = rt_proc_exit_code(&s->shell);

	for (size_t i = 0; i < s->ncmds; i++) {
		struct session_cmd *cmd = s->cmds[i];

		if (session_cmd_done(cmd))
			continue;
		cmd->finalized = true;
		if (!cmd->has_exit) {
			/* The running one takes the shell's status (`exit 3`); queued ones never
			 * ran. */
			cmd->has_exit = true;
			cmd->exit_code = cmd->begun[SESSION_STDOUT] ? code : -1;
		}
	}
	s->cur[0] = s->cur[1] = NULL;
	pthread_cond_broadcast(&s->cv);
}

/* ---- the pump ------------------------------------------------------------------ */

static void pump_del(struct session_pump *p, int fd)
{
	if (fd >= 0)
		epoll_ctl(p->epfd, EPOLL_CTL_DEL, fd, NULL);
}

/* A source is finished: out of the epoll set, closed; the pump's reference goes with the last. */
static void source_done(struct session *s, int kind)
{
	bool last;

	pthread_mutex_lock(&s->lock);
	if (kind == SESSION_STATUS) {
		pump_del(s->pump, s->shell.status_fd);
		/* The shell's zombie and its relay go now: a sandbox's stop waits for them. */
		rt_proc_close_status(&s->shell);
	} else {
		pump_del(s->pump, s->fds[kind]);
		if (s->fds[kind] >= 0)
			close(s->fds[kind]);
		s->fds[kind] = -1;
	}
	last = --s->open_sources == 0;
	pthread_mutex_unlock(&s->lock);
	/* Later events of this batch may still name it: the reference goes after the batch. */
	if (last) {
		s->release_next = s->pump->release;
		s->pump->release = s;
	}
}

/* Reads @stream until it would block (or a slice is done); false at EOF. */
static bool read_stream(struct session *s, int stream, char *chunk, size_t size)
{
	size_t total = 0;

	while (total < PUMP_SLICE) {
		ssize_t n = read(s->fds[stream], chunk, size);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return true;
		if (n <= 0)
			return false;
		pthread_mutex_lock(&s->lock);
		stream_feed(s, stream, chunk, (size_t)n);
		pthread_mutex_unlock(&s->lock);
		total += (size_t)n;
	}
	return true;
}

static void handle_source(struct session_pump *p, struct session_src *src, char *chunk, size_t size)
{
	struct session *s = src->session;

	(void)p;
	if (src->kind != SESSION_STATUS) {
		if (s->fds[src->kind] >= 0 && !read_stream(s, src->kind, chunk, size))
			source_done(s, src->kind);
		return;
	}
	if (s->shell.status_fd < 0 || !rt_proc_poll(&s->shell))
		return;
	/* Everything the shell wrote is in its pipes by now: take it before ending its commands. */
	for (int k = 0; k < 2; k++)
		if (s->fds[k] >= 0 && !read_stream(s, k, chunk, size))
			source_done(s, k);
	pthread_mutex_lock(&s->lock);
	s->ended = true;
	finish_commands_locked(s);
	pthread_mutex_unlock(&s->lock);
	source_done(s, SESSION_STATUS);
}

static void *pump_main(void *arg)
{
	struct session_pump *p = arg;
	struct epoll_event ev[32];
	size_t size = 1 << 16;
	char *chunk = malloc(size);

	if (!chunk)
		return NULL;
	for (;;) {
		int n = epoll_wait(p->epfd, ev, ARRAY_SIZE(ev), -1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			log_error("session pump: epoll_wait: %s", strerror(errno));
			break;
		}
		for (int i = 0; i < n; i++) {
			if (ev[i].data.ptr == NULL) {
				uint64_t v;

				(void)!read(p->wake_fd, &v, sizeof(v));
				continue;
			}
			handle_source(p, ev[i].data.ptr, chunk, size);
		}
		while (p->release) {
			struct session *s = p->release;

			p->release = s->release_next;
			session_put(s);
		}
		pthread_mutex_lock(&p->lock);
		if (p->stop) {
			pthread_mutex_unlock(&p->lock);
			break;
		}
		pthread_mutex_unlock(&p->lock);
	}
	free(chunk);
	return NULL;
}

struct session_pump *session_pump_start(struct runtime *rt, int *err)
{
	struct session_pump *p = calloc(1, sizeof(*p));
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
	char name[32];
	int rc;

	if (!p) {
		*err = -ENOMEM;
		return NULL;
	}
	p->rt = rt;
	p->epfd = -1;
	p->wake_fd = -1;
	pthread_mutex_init(&p->lock, NULL);
	random_hex(name, 8);
	name[16] = '\0';
	/* Unique per run; the leftovers of killed runs are removed at start (runtime.c). */
	if (snprintf(p->dir, sizeof(p->dir), "%s/runtime-%s", rt->tmp_dir, name) >=
	    (int)sizeof(p->dir))
		rc = -ENAMETOOLONG;
	else
		rc = mkdir(p->dir, 0700) < 0 ? -errno : 0;
	if (rc < 0) {
		log_warn("runtime: cannot create %s: %s", p->dir, strerror(-rc));
		goto fail;
	}
	p->epfd = epoll_create1(EPOLL_CLOEXEC);
	p->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (p->epfd < 0 || p->wake_fd < 0 ||
	    epoll_ctl(p->epfd, EPOLL_CTL_ADD, p->wake_fd, &ev) < 0) {
		rc = -errno;
		goto fail;
	}
	rc = -pthread_create(&p->thread, NULL, pump_main, p);
	if (rc < 0)
		goto fail;
	return p;
fail:
	if (p->epfd >= 0)
		close(p->epfd);
	if (p->wake_fd >= 0)
		close(p->wake_fd);
	rmdir(p->dir);
	pthread_mutex_destroy(&p->lock);
	free(p);
	*err = rc;
	return NULL;
}

void session_pump_stop(struct session_pump *p)
{
	uint64_t one = 1;

	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_mutex_unlock(&p->lock);
	(void)!write(p->wake_fd, &one, sizeof(one));
	pthread_join(p->thread, NULL);
	close(p->epfd);
	close(p->wake_fd);
	rm_rf(p->dir);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

static void session_pump_log_path(struct session_pump *p, char *out, size_t size)
{
	uint64_t n;

	pthread_mutex_lock(&p->lock);
	n = ++p->serial;
	pthread_mutex_unlock(&p->lock);
	if (snprintf(out, size, "%s/%llu.log", p->dir, (unsigned long long)n) >= (int)size)
		out[0] = '\0'; /* no log: the command's output is dropped */
}

/* ---- starting and ending sessions -------------------------------------------------- */

static int pump_add(struct session *s)
{
	int fds[3] = {s->fds[0], s->fds[1], s->shell.status_fd};

	for (int k = 0; k < 3; k++) {
		struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &s->src[k]};

		s->src[k] = (struct session_src){.session = s, .kind = k};
		if (epoll_ctl(s->pump->epfd, EPOLL_CTL_ADD, fds[k], &ev) < 0) {
			int rc = -errno;

			for (int j = 0; j < k; j++)
				pump_del(s->pump, fds[j]);
			return rc;
		}
	}
	return 0;
}

/* How long a write to a shell's stdin may wait for the shell (or a command) to read. */
#define INPUT_WAIT_MS 30000

static bool session_ended(struct session *s)
{
	bool ended;

	pthread_mutex_lock(&s->lock);
	ended = s->ended;
	pthread_mutex_unlock(&s->lock);
	return ended;
}

/*
 * Writes to the (non-blocking) stdin pipe, waiting while it is full, but
 * not forever: a session deleted meanwhile, or one whose reader never reads
 * (a detached job holding the pipe), ends the wait.
 */
static int write_input(struct session *s, const char *data, size_t len)
{
	int64_t deadline = now_mono_ms() + INPUT_WAIT_MS;

	while (len > 0) {
		ssize_t n = write(s->stdin_fd, data, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			struct pollfd pfd = {.fd = s->stdin_fd, .events = POLLOUT};

			if (session_ended(s))
				return -EPIPE;
			if (now_mono_ms() >= deadline)
				return -ETIMEDOUT;
			poll(&pfd, 1, 200);
			continue;
		}
		if (n < 0)
			return -errno;
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

int session_write_input(struct session *s, const char *data, size_t len)
{
	int rc;

	pthread_mutex_lock(&s->write_lock);
	rc = s->stdin_fd >= 0 ? write_input(s, data, len) : -EPIPE;
	pthread_mutex_unlock(&s->write_lock);
	return rc;
}

struct session *session_start(struct rt_instance *inst, struct session_pump *pump, const char *id,
			      char *why, size_t why_size)
{
	struct session *s = calloc(1, sizeof(*s));
	int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
	const char *argv[] = {inst->rt->shell, NULL, NULL, NULL};
	struct rt_spawn req = {0};
	struct buf prelude = BUF_INIT;
	char **envp = NULL;
	int rc;

	if (!s)
		return NULL;
	s->refs = 1;
	s->stdin_fd = -1;
	s->fds[0] = s->fds[1] = -1;
	s->shell.status_fd = -1;
	s->pump = pump;
	copy_str(s->id, sizeof(s->id), id);
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_init(&s->write_lock, NULL);
	pthread_cond_init(&s->cv, NULL);
	random_hex(s->token, TOKEN_LEN / 2);
	s->token[TOKEN_LEN] = '\0';

	if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0) {
		snprintf(why, why_size, "pipe: %s", strerror(errno));
		goto fail;
	}
	if (strstr(argv[0], "bash")) {
		argv[1] = "--noprofile";
		argv[2] = "--norc";
	}
	envp = rt_instance_environ(inst, NULL);
	if (!envp) {
		snprintf(why, why_size, "out of memory");
		goto fail;
	}
	req = (struct rt_spawn){.argv = argv,
				.envp = envp,
				.cwd = RT_HOME,
				.stdin_fd = in[0],
				.stdout_fd = out[1],
				.stderr_fd = err[1]};
	rc = rt_spawn(inst, &req, &s->shell, why, why_size);
	if (rc == 0 && s->shell.fail_stage == RT_STAGE_NONE && !s->shell.exited)
		goto started;
	if (rc == 0) {
		/* No home directory (removed by the user): the shell starts in / instead. */
		rt_proc_release(&s->shell);
		req.cwd = "/";
		rc = rt_spawn(inst, &req, &s->shell, why, why_size);
	}
	if (rc < 0)
		goto fail;
started:
	close(in[0]);
	close(out[1]);
	close(err[1]);
	in[0] = out[1] = err[1] = -1;
	s->stdin_fd = in[1];
	s->fds[0] = out[0];
	s->fds[1] = err[0];
	in[1] = out[0] = err[0] = -1;
	fcntl(s->stdin_fd, F_SETFL, O_NONBLOCK);
	fcntl(s->fds[0], F_SETFL, O_NONBLOCK);
	fcntl(s->fds[1], F_SETFL, O_NONBLOCK);

	buf_printf(&prelude,
		   "__qvd_b() { builtin printf '\\036%sB%%s\\036' \"$1\"; "
		   "builtin printf '\\036%sB%%s\\036' \"$1\" >&2; }\n"
		   "__qvd_e() { builtin printf '\\036%sE%%s:%%s\\036' \"$1\" \"$2\"; "
		   "builtin printf '\\036%sE%%s\\036' \"$1\" >&2; }\n",
		   s->token, s->token, s->token, s->token);
	if (session_write_input(s, prelude.data, prelude.len) < 0) {
		snprintf(why, why_size, "the session's shell exited at once");
		goto fail;
	}
	/* The pump's reference, dropped when its three sources are done. */
	s->refs++;
	s->open_sources = 3;
	rc = pump_add(s);
	if (rc < 0) {
		s->refs--;
		s->open_sources = 0;
		snprintf(why, why_size, "epoll: %s", strerror(-rc));
		goto fail;
	}
	buf_free(&prelude);
	free(envp);
	return s;
fail:
	for (int i = 0; i < 2; i++) {
		if (in[i] >= 0)
			close(in[i]);
		if (out[i] >= 0)
			close(out[i]);
		if (err[i] >= 0)
			close(err[i]);
	}
	buf_free(&prelude);
	free(envp);
	session_put(s);
	return NULL;
}

void session_end(struct session *s)
{
	pthread_mutex_lock(&s->lock);
	s->ended = true;
	/*
	 * The shell's group: the shell and every job it started (a setsid escapes:
	 * see doc). Under the lock: the pump closes the status (unpinning the pid)
	 * under it too.
	 */
	rt_proc_signal_group(&s->shell, SIGKILL);
	pthread_mutex_unlock(&s->lock);
	pthread_mutex_lock(&s->write_lock);
	if (s->stdin_fd >= 0)
		close(s->stdin_fd);
	s->stdin_fd = -1;
	pthread_mutex_unlock(&s->write_lock);
	pthread_mutex_lock(&s->lock);
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->lock);
}

/* ---- commands -------------------------------------------------------------------- */

/* Appends @cmd as 'single-quoted' shell text. */
static int quote_single(struct buf *out, const char *text)
{
	int rc = buf_append(out, "'", 1);

	for (const char *p = text; *p && rc == 0; p++)
		rc = *p == '\'' ? buf_append_str(out, "'\\''") : buf_append(out, p, 1);
	return rc ? rc : buf_append(out, "'", 1);
}

struct session_cmd *session_submit(struct session *s, const char *command, bool async, int *err)
{
	struct session_cmd *cmd = calloc(1, sizeof(*cmd));
	struct buf line = BUF_INIT;
	int rc;

	if (!cmd || !(cmd->command = strdup(command))) {
		free(cmd);
		*err = -ENOMEM;
		return NULL;
	}
	uuid4(cmd->id);
	cmd->async = async;
	session_pump_log_path(s->pump, cmd->log_path, sizeof(cmd->log_path));

	pthread_mutex_lock(&s->lock);
	if (s->ended) {
		pthread_mutex_unlock(&s->lock);
		cmd_free(cmd);
		*err = -EPIPE;
		return NULL;
	}
	if (s->ncmds == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 16;
		struct session_cmd **items = realloc(s->cmds, cap * sizeof(*items));

		if (!items) {
			pthread_mutex_unlock(&s->lock);
			cmd_free(cmd);
			*err = -ENOMEM;
			return NULL;
		}
		s->cmds = items;
		s->cap = cap;
	}
	/* The oldest finished command goes when too many are kept. */
	if (s->ncmds >= SESSION_COMMANDS_KEPT) {
		for (size_t i = 0; i < s->ncmds; i++) {
			struct session_cmd *old = s->cmds[i];

			if (!session_cmd_done(old) || old == s->last || old->pins ||
			    old == s->cur[0] || old == s->cur[1])
				continue;
			memmove(s->cmds + i, s->cmds + i + 1,
				(s->ncmds - i - 1) * sizeof(*s->cmds));
			s->ncmds--;
			cmd_free(old);
			break;
		}
	}
	cmd->pins = 1;
	s->cmds[s->ncmds++] = cmd;
	pthread_mutex_unlock(&s->lock);

	rc = buf_printf(&line, "__qvd_b %s; eval ", cmd->id);
	rc = rc ? rc : quote_single(&line, command);
	rc =
	    rc ? rc : buf_printf(&line, "%s; __qvd_e %s $?\n", async ? "" : " </dev/null", cmd->id);
	if (rc == 0)
		rc = session_write_input(s, line.data, line.len);
	buf_free(&line);
	if (rc < 0) {
		/* The shell is gone: the command never ran. */
		pthread_mutex_lock(&s->lock);
		cmd->finalized = true;
		cmd->has_exit = true;
		cmd->exit_code = -1;
		cmd->pins--;
		pthread_mutex_unlock(&s->lock);
		*err = rc;
		return NULL;
	}
	return cmd;
}

void session_wait_cmd(struct session *s, struct session_cmd *cmd)
{
	pthread_mutex_lock(&s->lock);
	while (!session_cmd_done(cmd) && !(s->ended && !s->open_sources))
		pthread_cond_wait(&s->cv, &s->lock);
	pthread_mutex_unlock(&s->lock);
}

struct session_cmd *session_find_cmd(struct session *s, const char *id)
{
	struct session_cmd *cmd;

	pthread_mutex_lock(&s->lock);
	cmd = find_cmd_locked(s, id, strlen(id));
	if (cmd)
		cmd->pins++;
	pthread_mutex_unlock(&s->lock);
	return cmd;
}

void session_unpin_cmd(struct session *s, struct session_cmd *cmd)
{
	pthread_mutex_lock(&s->lock);
	cmd->pins--;
	pthread_mutex_unlock(&s->lock);
}

/* ---- the table ------------------------------------------------------------------- */

struct session_table *session_table_new(struct rt_instance *inst)
{
	struct session_table *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->inst = inst;
	pthread_mutex_init(&t->lock, NULL);
	return t;
}

struct session *session_table_find(struct session_table *t, const char *id)
{
	struct session *s = NULL;

	pthread_mutex_lock(&t->lock);
	for (size_t i = 0; i < t->n; i++) {
		if (!strcmp(t->items[i]->id, id)) {
			s = t->items[i];
			session_get(s);
			break;
		}
	}
	pthread_mutex_unlock(&t->lock);
	return s;
}

int session_table_add(struct session_table *t, struct session *s)
{
	int rc = 0;

	pthread_mutex_lock(&t->lock);
	for (size_t i = 0; i < t->n && rc == 0; i++)
		if (!strcmp(t->items[i]->id, s->id))
			rc = -EEXIST;
	if (rc == 0 && t->n >= SESSION_MAX_PER_SANDBOX)
		rc = -ENOSPC;
	if (rc == 0 && t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 8;
		struct session **items = realloc(t->items, cap * sizeof(*items));

		if (!items)
			rc = -ENOMEM;
		else {
			t->items = items;
			t->cap = cap;
		}
	}
	if (rc == 0) {
		session_get(s); /* the table's */
		t->items[t->n++] = s;
	}
	pthread_mutex_unlock(&t->lock);
	return rc;
}

struct session *session_table_remove(struct session_table *t, const char *id)
{
	struct session *s = NULL;

	pthread_mutex_lock(&t->lock);
	for (size_t i = 0; i < t->n; i++) {
		if (!strcmp(t->items[i]->id, id)) {
			s = t->items[i];
			t->items[i] = t->items[--t->n];
			break;
		}
	}
	pthread_mutex_unlock(&t->lock);
	return s; /* with the table's reference */
}

size_t session_table_snapshot(struct session_table *t, struct session ***out)
{
	size_t n;

	pthread_mutex_lock(&t->lock);
	n = t->n;
	*out = n ? calloc(n, sizeof(**out)) : NULL;
	if (!*out)
		n = 0;
	for (size_t i = 0; i < n; i++) {
		(*out)[i] = t->items[i];
		session_get(t->items[i]);
	}
	pthread_mutex_unlock(&t->lock);
	return n;
}

void session_table_clear(struct session_table *t)
{
	struct session **items;
	size_t n;

	if (!t)
		return;
	pthread_mutex_lock(&t->lock);
	items = t->items;
	n = t->n;
	t->items = NULL;
	t->n = t->cap = 0;
	pthread_mutex_unlock(&t->lock);
	for (size_t i = 0; i < n; i++) {
		session_end(items[i]);
		session_put(items[i]);
	}
	free(items);
}

void session_table_free(struct session_table *t)
{
	if (!t)
		return;
	session_table_clear(t);
	pthread_mutex_destroy(&t->lock);
	free(t);
}
