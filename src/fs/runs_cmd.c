/*
 * runs/ commands (runs_internal.h): a follower thread per watched command
 * polls GET .../command/{cid} and then the log snapshot past what it
 * already has (every 25 ms while output comes, backing off to 250 ms, and
 * slower for big logs, which the snapshot sends whole), writes the new
 * bytes to an unlinked spool file and wakes the waiting readers. While no
 * reader has the command open only its status is polled, every 2 s, and
 * the log is fetched once at the end. The status is read before the log:
 * once it shows an exit code, the log read after it is complete. Then what
 * the nodes do: open, read, write (a command, a program, stdin).
 *
 * (The logs websocket, ?follow=true, would stream big logs in one pass;
 * it waits for one websocket hub per process: two libwebsockets contexts
 * at once leak OpenSSL state at exit.)
 */
#include "runs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
#include "cache.h"
#include "files.h"
#include "log.h"
#include "runs_internal.h"
#include "util.h"

/* ---- sessions and commands ---------------------------------------------- */

struct rsess *runs_sess_find(struct rsb *sb, const char *name)
{
	for (struct rsess *s = sb->sessions; s; s = s->next)
		if (!strcmp(s->name, name))
			return s;
	return NULL;
}

/* The session record (made when new). Called with the lock held; NULL on ENOMEM. */
struct rsess *runs_sess_get(struct rsb *sb, const char *name)
{
	struct rsess *s = runs_sess_find(sb, name);

	if (s) {
		s->used_ms = now_mono_ms();
		return s;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->used_ms = now_mono_ms();
	s->sb = sb;
	copy_str(s->name, sizeof(s->name), name);
	s->next = sb->sessions;
	sb->sessions = s;
	return s;
}

/* Drops a reference; the last one closes the spool. Called with the lock held. */
void runs_cmd_unref_locked(struct rcmd *c)
{
	if (--c->refs > 0)
		return;
	if (c->spool_fd >= 0)
		close(c->spool_fd);
	pthread_cond_destroy(&c->kick);
	free(c);
}

/* A user is gone; with none left the follower stops. Called with the lock held. */
void runs_cmd_unuse_locked(struct rcmd *c)
{
	if (--c->users == 0) {
		c->stop = true;
		pthread_cond_signal(&c->kick);
	}
	runs_cmd_unref_locked(c);
}

void runs_cmd_unuse(struct runs *r, struct rcmd *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&r->lock);
	runs_cmd_unuse_locked(c);
	pthread_mutex_unlock(&r->lock);
}

static void wake(struct runs *r, struct rcmd *c)
{
	runs_wake_fn fn;
	void *arg;

	pthread_mutex_lock(&r->lock);
	fn = r->wake;
	arg = r->wake_arg;
	pthread_mutex_unlock(&r->lock);
	if (fn)
		fn(arg, c);
}

static bool follow_cancelled(void *arg)
{
	struct rcmd *c = arg;
	bool stop;

	pthread_mutex_lock(&c->r->lock);
	stop = c->stop || c->r->closing;
	pthread_mutex_unlock(&c->r->lock);
	return stop;
}

struct spool_sink {
	struct rcmd *c;
	int64_t at;	   /* where the next byte goes */
	int64_t announced; /* readers were woken up to here */
	int error;
};

static int spool_data(void *arg, const char *data, size_t len)
{
	struct spool_sink *s = arg;
	struct rcmd *c = s->c;

	while (len) {
		ssize_t n = pwrite(c->spool_fd, data, len, s->at);

		if (n < 0) {
			s->error = errno;
			return -EIO;
		}
		data += n;
		len -= (size_t)n;
		s->at += n;
	}
	pthread_mutex_lock(&c->r->lock);
	c->size = s->at;
	pthread_mutex_unlock(&c->r->lock);
	/* Readers wait for the first bytes at once, then in slices. */
	if (s->announced == 0 || s->at - s->announced >= 64 * 1024) {
		s->announced = s->at;
		wake(c->r, c);
	}
	return 0;
}

void runs_cmd_finish(struct rcmd *c, bool exited, int code, int errnum, const struct dt_error *err)
{
	struct runs *r = c->r;
	bool changed = false, ended_activity = false;

	pthread_mutex_lock(&r->lock);
	if (!c->done) {
		changed = true;
		ended_activity = c->activity;
		c->activity = false;
		c->done = true;
		if (exited) {
			c->exit_code = code;
		} else {
			c->fail = errnum;
			snprintf(c->fail_msg, sizeof(c->fail_msg), "%s",
				 err && err->message[0] ? err->message : strerror(errnum));
		}
	}
	pthread_mutex_unlock(&r->lock);
	/* Before any reader hears of the end: what the command wrote is asked for anew. */
	if (ended_activity && r->fs->files)
		files_sandbox_activity(r->fs->files, c->sb->id, false);
	/* Readers get the failure (and the error nodes with it); the log says it once. */
	if (changed && !exited && errnum != EINTR)
		log_info("runs: command %s of session %s: %s", c->id, c->session, c->fail_msg);
	wake(r, c);
}

/* How long to wait before the next poll: soon while output comes, longer for big logs. */
static long next_delay(long delay, bool grew, int64_t size)
{
	long floor_ms = POLL_FIRST_MS + (long)(size / (32 << 20) * 250), cap;

	if (floor_ms > 1000)
		floor_ms = 1000;
	if (grew)
		return floor_ms;
	delay += delay / 2;
	cap = floor_ms > POLL_MAX_MS ? 1000 : POLL_MAX_MS;
	if (delay < floor_ms)
		delay = floor_ms;
	return delay > cap ? cap : delay;
}

/* Waits @delay ms (POLL_IDLE_MS while no reader is there), less when a reader comes or it stops. */
static void follow_sleep(struct rcmd *c, long delay)
{
	struct runs *r = c->r;
	struct timespec until;

	clock_gettime(CLOCK_MONOTONIC, &until);
	pthread_mutex_lock(&r->lock);
	if (c->handles == 0 && delay < POLL_IDLE_MS)
		delay = POLL_IDLE_MS;
	until.tv_sec += delay / 1000;
	until.tv_nsec += (delay % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	while (!c->kicked && !c->stop && !r->closing)
		if (pthread_cond_timedwait(&c->kick, &r->lock, &until) == ETIMEDOUT)
			break;
	c->kicked = false;
	pthread_mutex_unlock(&r->lock);
}

static void *follow_main(void *arg)
{
	struct rcmd *c = arg;
	struct runs *r = c->r;
	struct spool_sink sink = {.c = c};
	long delay = POLL_FIRST_MS;
	int transport_failures = 0;
	int64_t started_ms = now_mono_ms();

	backend_set_cancel(follow_cancelled, c);
	for (;;) {
		struct dt_session_command st = {0};
		struct dt_error err = {0};
		int64_t before = sink.at, total = 0;
		bool exited, want_log;
		int ret, code;

		if (follow_cancelled(c)) {
			runs_cmd_finish(c, false, 0, EINTR, NULL);
			break;
		}
		ret = TB_CALL(r, c->sb, &err, t,
			      dt_session_command_get(t->tb, c->session, c->id, &st, &err));
		exited = ret == 0 && st.has_exit;
		code = st.exit_code;
		dt_session_command_clear(&st);
		/*
		 * The log snapshot comes whole each time: it is fetched while
		 * someone reads, and once at the end; a command nobody watches
		 * costs a status request every POLL_IDLE_MS.
		 */
		pthread_mutex_lock(&r->lock);
		want_log = exited || c->handles > 0;
		pthread_mutex_unlock(&r->lock);
		if (ret == 0 && want_log)
			ret = TB_CALL(r, c->sb, &err, t,
				      dt_session_command_logs(t->tb, c->session, c->id, sink.at,
							      spool_data, &sink, &total, &err));
		if (ret == 0 && sink.announced != sink.at) {
			sink.announced = sink.at;
			wake(r, c);
		}
		if (ret < 0) {
			if (follow_cancelled(c)) {
				runs_cmd_finish(c, false, 0, EINTR, NULL);
				break;
			}
			if (err.transport && ++transport_failures < TRANSPORT_TRIES) {
				usleep(200 * 1000);
				continue;
			}
			if (sink.error)
				runs_fail(&err, EIO, "spooling the output: %s",
					  strerror(sink.error));
			else if (ret == -ENOENT)
				runs_fail(&err, EIO, "session %s or its command %s is gone",
					  c->session, c->id);
			runs_cmd_finish(c, false, 0, ret == -ENOENT || sink.error ? EIO : -ret,
					&err);
			break;
		}
		transport_failures = 0;
		if (exited) {
			runs_cmd_finish(c, true, code, 0, NULL);
			break;
		}
		delay = next_delay(delay, sink.at > before, sink.at);
		/* A young command's first bytes are awaited closely (mkdir-to-output latency). */
		if (now_mono_ms() - started_ms < POLL_EAGER_FOR_MS && sink.at == 0)
			delay = POLL_EAGER_MS;
		follow_sleep(c, delay);
	}
	backend_set_cancel(NULL, NULL);
	pthread_mutex_lock(&r->lock);
	c->following = false;
	runs_cmd_unref_locked(c);
	if (--r->followers == 0)
		pthread_cond_broadcast(&r->followers_done);
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

static int spool_open(struct runs *r)
{
	int fd = open(r->spool_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

	if (fd < 0) {
		char path[PATH_MAX + 16];

		snprintf(path, sizeof(path), "%s/runs-XXXXXX", r->spool_dir);
		fd = mkostemp(path, O_CLOEXEC);
		if (fd >= 0)
			unlink(path);
	}
	return fd;
}

/*
 * The record of command @id of session @s, with a user reference for the
 * caller (made, and its follower started, when new). Called without the lock.
 */
int runs_cmd_get(struct runs *r, struct rsb *sb, const char *session, const char *id,
		 struct rcmd **out, struct dt_error *err)
{
	struct rcmd *c = NULL, *evicted = NULL;
	struct rsess *s;
	pthread_t thread;
	pthread_attr_t attr;

	*out = NULL;
	pthread_mutex_lock(&r->lock);
	s = runs_sess_get(sb, session);
	for (size_t i = 0; s && i < RING; i++)
		if (s->ring[i] && !strcmp(s->ring[i]->id, id) && !s->ring[i]->fail) {
			c = s->ring[i];
			break;
		}
	if (c) {
		c->users++;
		c->refs++;
		pthread_mutex_unlock(&r->lock);
		*out = c;
		return 0;
	}
	if (!s || r->closing) {
		pthread_mutex_unlock(&r->lock);
		return s ? runs_fail(err, EIO, "unmounting")
			 : runs_fail(err, ENOMEM, "out of memory");
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		pthread_mutex_unlock(&r->lock);
		return runs_fail(err, ENOMEM, "out of memory");
	}
	c->r = r;
	c->sb = sb;
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&c->kick, &ca);
		pthread_condattr_destroy(&ca);
	}
	copy_str(c->session, sizeof(c->session), session);
	copy_str(c->id, sizeof(c->id), id);
	c->spool_fd = spool_open(r);
	if (c->spool_fd < 0) {
		int e = errno;

		pthread_mutex_unlock(&r->lock);
		free(c);
		return runs_fail(err, EIO, "cannot make a spool file in %s: %s", r->spool_dir,
				 strerror(e));
	}
	/* The caller's, the ring's and the follower's. */
	c->users = 2;
	c->refs = 3;
	c->following = true;
	evicted = s->ring[s->ring_next];
	s->ring[s->ring_next] = c;
	s->ring_next = (s->ring_next + 1) % RING;
	if (evicted)
		runs_cmd_unuse_locked(evicted);
	r->followers++;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&thread, &attr, follow_main, c) != 0) {
		r->followers--;
		c->following = false;
		c->refs--;
		c->done = true;
		c->fail = EAGAIN;
		copy_str(c->fail_msg, sizeof(c->fail_msg), "cannot start a follower thread");
	}
	pthread_attr_destroy(&attr);
	pthread_mutex_unlock(&r->lock);
	*out = c;
	return 0;
}

/* Makes @c the session's latest command. */
void runs_set_latest(struct runs *r, struct rsb *sb, const char *session, struct rcmd *c)
{
	struct rsess *s;
	struct rcmd *old = NULL;

	pthread_mutex_lock(&r->lock);
	s = runs_sess_get(sb, session);
	if (s) {
		old = s->latest;
		s->latest = c;
		c->users++;
		c->refs++;
	}
	if (old)
		runs_cmd_unuse_locked(old);
	pthread_mutex_unlock(&r->lock);
}

/* The session's latest command, as the server has it (else as this mount knows it). */
int runs_latest_cmd(struct runs *r, struct rsb *sb, const char *session, struct rcmd **out,
		    struct dt_error *err)
{
	struct dt_session info = {0};
	struct rsess *s;
	int ret;

	*out = NULL;
	ret = TB_CALL(r, sb, err, t, dt_session_get(t->tb, session, &info, err));
	if (ret == 0 && info.ncommands > 0) {
		ret = runs_cmd_get(r, sb, session, info.commands[info.ncommands - 1].id, out, err);
		dt_session_clear(&info);
		return ret;
	}
	dt_session_clear(&info);
	if (ret == -ENOENT)
		return runs_fail(err, ENOENT, "session %s is gone", session);
	pthread_mutex_lock(&r->lock);
	s = runs_sess_find(sb, session);
	if (s && s->latest) {
		*out = s->latest;
		s->latest->users++;
		s->latest->refs++;
		ret = 0;
	}
	pthread_mutex_unlock(&r->lock);
	return ret; /* 0 with no command yet, or the failure when nothing is known */
}
/* ---- nodes -------------------------------------------------------------- */

static const char ts_runner[] =
    "const fs=require(\"fs\"),path=require(\"path\"),Module=require(\"module\");"
    "let ts;try{ts=require(\"typescript\")}catch(e){ts=require(\"/usr/share/nodejs/typescript\")}"
    "const file=path.resolve(process.argv[1]);const src=fs.readFileSync(file,\"utf8\");"
    "const r=ts.transpileModule(src,{fileName:file,reportDiagnostics:true,compilerOptions:{"
    "module:ts.ModuleKind.CommonJS,target:ts.ScriptTarget.ES2020,esModuleInterop:true}});"
    "const bad=(r.diagnostics||[]).filter(d=>d.category===ts.DiagnosticCategory.Error);"
    "if(bad.length){for(const d of bad){let at=\"\";if(d.file&&d.start!==undefined){"
    "const p=d.file.getLineAndCharacterOfPosition(d.start);"
    "at=\"main.ts(\"+(p.line+1)+\",\"+(p.character+1)+\"): \"}"
    "process.stderr.write(at+\"error TS\"+d.code+\": \"+"
    "ts.flattenDiagnosticMessageText(d.messageText,\"\\n\")+\"\\n\")}process.exit(1)}"
    "process.argv.splice(1,1);const m=new Module(file,null);m.filename=file;"
    "m.paths=Module._nodeModulePaths(process.cwd());m._compile(r.outputText,file);";

static int base64(struct buf *b, const unsigned char *data, size_t len)
{
	static const char digits[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	int rc = buf_reserve(b, (len + 2) / 3 * 4 + 1);

	for (size_t i = 0; rc == 0 && i < len; i += 3) {
		unsigned v = (unsigned)data[i] << 16;
		char q[4];

		if (i + 1 < len)
			v |= (unsigned)data[i + 1] << 8;
		if (i + 2 < len)
			v |= data[i + 2];
		q[0] = digits[v >> 18 & 63];
		q[1] = digits[v >> 12 & 63];
		q[2] = i + 1 < len ? digits[v >> 6 & 63] : '=';
		q[3] = i + 2 < len ? digits[v & 63] : '=';
		rc = buf_append(b, q, 4);
	}
	return rc;
}

/*
 * The session command that runs a program in @lang. Its file is in
 * /tmp of the sandbox: @uploaded (sent through the file API), else made by
 * the command itself from @code in base64. It runs in a subshell that
 * removes the file whatever happens and whose status is the program's;
 * its stdin is the command's, so stdin feeds it. TypeScript: ts-node when
 * the sandbox has it (as Daytona), else node with the TypeScript
 * compiler's transpiler.
 */
static int code_command(const char *lang, const struct buf *code, const char *uploaded,
			struct buf *out, struct dt_error *err)
{
	bool ts = !strcmp(lang, "typescript");
	int rc;

	if (uploaded) {
		rc = buf_printf(out, "(f='%s'; trap 'rm -f \"$f\"' EXIT; ", uploaded);
	} else {
		rc = buf_append_str(out, "(f=$(mktemp /tmp/quaverfs-code.XXXXXX) || exit; "
					 "trap 'rm -f \"$f\" \"$f.ts\"' EXIT; printf '%s' '");
		rc = rc ? rc : base64(out, (const unsigned char *)code->data, code->len);
		rc = rc ? rc : buf_append_str(out, "' | base64 -d > \"$f\" && ");
		if (!rc && ts)
			rc = buf_append_str(out, "mv \"$f\" \"$f.ts\" && f=\"$f.ts\" && ");
	}
	if (!rc && !strcmp(lang, "python"))
		rc = buf_append_str(out, "python3 -u \"$f\")");
	else if (!rc && !strcmp(lang, "javascript"))
		rc = buf_append_str(out, "node \"$f\")");
	else if (!rc)
		rc = buf_printf(out,
				"if command -v ts-node >/dev/null 2>&1; then ts-node -T -O "
				"'{\"module\":\"CommonJS\"}' \"$f\"; else node -e '%s' \"$f\"; fi)",
				ts_runner);
	return rc ? runs_fail(err, ENOMEM, "out of memory") : 0;
}

/* Programs up to this size travel inside the command; bigger ones are uploaded first. */
#define CODE_INLINE_MAX (256u << 10)

/* Sends @code to a new file of /tmp in the sandbox; its path in @path. */
static int upload_code(struct runs *r, struct rsb *sb, const char *lang, const struct buf *code,
		       char *path, size_t path_size, struct dt_error *err)
{
	char id[33];
	int fd, ret;

	fd = spool_open(r);
	if (fd < 0)
		return runs_fail(err, EIO, "cannot stage the program in %s: %s", r->spool_dir,
				 strerror(errno));
	for (size_t done = 0; done < code->len;) {
		ssize_t n = pwrite(fd, code->data + done, code->len - done, (off_t)done);

		if (n < 0) {
			ret = runs_fail(err, EIO, "staging the program: %s", strerror(errno));
			close(fd);
			return ret;
		}
		done += (size_t)n;
	}
	random_hex(id, 16);
	id[32] = '\0';
	snprintf(path, path_size, "/tmp/quaverfs-code-%s.%s", id,
		 !strcmp(lang, "python")       ? "py"
		 : !strcmp(lang, "javascript") ? "js"
					       : "ts");
	ret = TB_CALL(r, sb, err, t, dt_fs_upload_fd(t->tb, path, fd, (int64_t)code->len, err));
	close(fd);
	return ret;
}

static void activity(struct runs *r, const char *sb_id, bool begin)
{
	if (r->fs->files)
		files_sandbox_activity(r->fs->files, sb_id, begin);
}

/* Runs @line in session @o as the new latest command. */
static int run_line(struct runs *r, const struct robj *o, const char *line, bool is_code,
		    const struct buf *code, struct dt_error *err)
{
	struct dt_session_exec_result res = {0};
	struct buf composed = BUF_INIT;
	struct rcmd *c = NULL;
	char lang[64] = "python";
	struct rsb *sb = runs_sb_get(r, o->sb_id);
	int ret;

	if (!sb)
		return runs_fail(err, ENOMEM, "out of memory");
	if (is_code) {
		struct rtb *t = NULL;

		char uploaded[96];

		ret = runs_sb_toolbox(r, sb, &t, lang, sizeof(lang), err);
		runs_rtb_put(r, t);
		if (ret == 0 && strcmp(lang, "python") && strcmp(lang, "javascript") &&
		    strcmp(lang, "typescript"))
			ret = runs_fail(err, EINVAL,
					"the sandbox's language %s (label code-toolbox-language) "
					"is not python, javascript or typescript",
					lang);
		if (ret == 0 && code->len > CODE_INLINE_MAX)
			ret = upload_code(r, sb, lang, code, uploaded, sizeof(uploaded), err);
		if (ret == 0)
			ret =
			    code_command(lang, code, code->len > CODE_INLINE_MAX ? uploaded : NULL,
					 &composed, err);
		if (ret < 0)
			goto out;
		line = composed.data;
	}
	/*
	 * files/ of the sandbox is strict while the command runs (files.h):
	 * from before it starts until its follower sees it end.
	 */
	activity(r, o->sb_id, true);
	ret = TB_CALL(r, sb, err, t, dt_session_exec(t->tb, o->session, line, true, &res, err));
	if (ret == -ENOENT)
		ret = runs_fail(err, ENOENT, "session %s is gone", o->session);
	if (ret == 0)
		ret = runs_cmd_get(r, sb, o->session, res.cmd_id, &c, err);
	if (ret == 0) {
		bool handed = false;

		pthread_mutex_lock(&r->lock);
		if (!c->done) {
			c->activity = true; /* runs_cmd_finish ends it */
			handed = true;
		}
		pthread_mutex_unlock(&r->lock);
		if (!handed)
			activity(r, o->sb_id, false);
		runs_set_latest(r, sb, o->session, c);
		runs_cmd_unuse(r, c);
	} else {
		activity(r, o->sb_id, false);
	}
out:
	dt_session_exec_result_clear(&res);
	buf_free(&composed);
	return ret;
}

int runs_open(struct runs *r, uint64_t ino, int flags, struct runs_handle **out, bool *streaming,
	      struct dt_error *err)
{
	struct runs_handle *h;
	struct rsb *sb;
	int node, ret = 0, acc = flags & O_ACCMODE;

	*out = NULL;
	*streaming = false;
	h = calloc(1, sizeof(*h));
	if (!h)
		return runs_fail(err, ENOMEM, "out of memory");
	h->ino = ino;
	if (!runs_obj_of(r, ino, &h->obj, &node) || !runs_node_valid(h->obj.kind, node)) {
		free(h);
		return runs_fail(err, ESTALE, "unknown inode");
	}
	h->node = node;
	if (node == RN_DIR || node == RN_COMMANDS) {
		free(h);
		return -EISDIR;
	}
	if (acc != O_RDONLY && !(runs_node_mode(h->obj.kind, node) & 0200)) {
		free(h);
		return runs_fail(err, EACCES, "read-only");
	}
	sb = runs_sb_get(r, h->obj.sb_id);
	if (!sb) {
		free(h);
		return runs_fail(err, ENOMEM, "out of memory");
	}
	if (node == RN_OUTPUT || node == RN_EXIT) {
		*streaming = true;
		if (h->obj.kind == RO_CMD)
			ret = runs_cmd_get(r, sb, h->obj.session, h->obj.cmd, &h->cmd, err);
		else
			ret = runs_latest_cmd(r, sb, h->obj.session, &h->cmd, err);
	}
	if (ret < 0) {
		free(h);
		return ret;
	}
	if (h->cmd) {
		/* A reader: the follower polls at full pace from now on. */
		pthread_mutex_lock(&r->lock);
		h->cmd->handles++;
		h->cmd->kicked = true;
		pthread_cond_signal(&h->cmd->kick);
		pthread_mutex_unlock(&r->lock);
	}
	*out = h;
	return 0;
}

const void *runs_handle_key(const struct runs_handle *h)
{
	return h->cmd;
}

uint64_t runs_handle_ino(const struct runs_handle *h)
{
	return h->ino;
}

/* The text of a command (the command node): from the server. */
static int command_text(struct runs *r, struct runs_handle *h, struct buf *text,
			struct dt_error *err)
{
	struct dt_session info = {0};
	struct rsb *sb = runs_sb_get(r, h->obj.sb_id);
	int ret;

	if (!sb)
		return runs_fail(err, ENOMEM, "out of memory");
	ret = runs_session_exists(r, sb, h->obj.session, &info, err);
	if (ret == 0 && info.ncommands > 0) {
		const struct dt_session_command *c = &info.commands[info.ncommands - 1];

		for (size_t i = 0; h->obj.kind == RO_CMD && i < info.ncommands; i++)
			if (!strcmp(info.commands[i].id, h->obj.cmd))
				c = &info.commands[i];
		if (buf_printf(text, "%s\n", c->command))
			ret = runs_fail(err, ENOMEM, "out of memory");
	} else if (ret == 0) {
		ret = buf_append_str(text, "\n") ? runs_fail(err, ENOMEM, "out of memory") : 0;
	}
	dt_session_clear(&info);
	return ret;
}

static void slice(const char *text, size_t len, int64_t off, size_t size, char *buf, size_t *got)
{
	*got = 0;
	if (off < 0 || (uint64_t)off >= len)
		return;
	*got = len - (size_t)off < size ? len - (size_t)off : size;
	memcpy(buf, text + off, *got);
}

int runs_read(struct runs *r, struct runs_handle *h, char *buf, size_t size, int64_t off,
	      size_t *got, struct dt_error *err)
{
	struct rcmd *c = h->cmd;
	int64_t avail;
	ssize_t n;

	*got = 0;
	if (h->node == RN_CODE || h->node == RN_STDIN)
		return 0;
	if (h->node == RN_COMMAND) {
		struct buf text = BUF_INIT;
		int ret = command_text(r, h, &text, err);

		if (ret == 0)
			slice(text.data, text.len, off, size, buf, got);
		buf_free(&text);
		return ret;
	}
	if (!c) /* no command run in this session yet */
		return 0;
	pthread_mutex_lock(&r->lock);
	if (h->node == RN_EXIT) {
		if (!c->done) {
			pthread_mutex_unlock(&r->lock);
			return -EAGAIN;
		}
		if (c->fail) {
			int e = c->fail;

			runs_fail(err, e == EINTR ? EIO : e, "%s", c->fail_msg);
			pthread_mutex_unlock(&r->lock);
			return -err->err;
		}
		snprintf(h->exit_text, sizeof(h->exit_text), "%d\n", c->exit_code);
		pthread_mutex_unlock(&r->lock);
		slice(h->exit_text, strlen(h->exit_text), off, size, buf, got);
		return 0;
	}
	avail = c->size - off;
	if (avail <= 0) {
		int e = c->fail;
		bool done = c->done;

		if (done && e)
			runs_fail(err, e == EINTR ? EIO : e, "%s", c->fail_msg);
		pthread_mutex_unlock(&r->lock);
		if (!done)
			return -EAGAIN;
		return e ? -err->err : 0;
	}
	pthread_mutex_unlock(&r->lock);
	if ((int64_t)size > avail)
		size = (size_t)avail;
	n = pread(c->spool_fd, buf, size, off);
	if (n < 0)
		return runs_fail(err, EIO, "reading the spooled output: %s", strerror(errno));
	*got = (size_t)n;
	return 0;
}

bool runs_ready(struct runs *r, struct runs_handle *h, int64_t off)
{
	bool ready = true;

	if (!h->cmd)
		return true;
	pthread_mutex_lock(&r->lock);
	if (h->node == RN_EXIT)
		ready = h->cmd->done;
	else if (h->node == RN_OUTPUT)
		ready = h->cmd->done || h->cmd->size > off;
	pthread_mutex_unlock(&r->lock);
	return ready;
}

int runs_write(struct runs *r, struct runs_handle *h, const char *data, size_t len,
	       struct dt_error *err)
{
	if (h->obj.kind != RO_SESSION)
		return runs_fail(err, EACCES, "read-only");
	if (h->node == RN_CODE) {
		if (h->code.len + len > CODE_MAX)
			return runs_fail(err, EFBIG, "a program has at most %u bytes", CODE_MAX);
		return buf_append(&h->code, data, len) ? runs_fail(err, ENOMEM, "out of memory")
						       : 0;
	}
	if (memchr(data, '\0', len))
		return runs_fail(err, EINVAL, "a NUL byte cannot be sent");
	if (h->node == RN_COMMAND) {
		char *line = strndup(data, len);
		size_t n;
		int ret;

		if (!line)
			return runs_fail(err, ENOMEM, "out of memory");
		n = strlen(line);
		if (n && line[n - 1] == '\n')
			line[--n] = '\0';
		if (!line[strspn(line, " \t\r\n")])
			ret = runs_fail(err, EINVAL, "an empty command");
		else
			ret = run_line(r, &h->obj, line, false, NULL, err);
		free(line);
		return ret;
	}
	if (h->node == RN_STDIN) {
		struct rsb *sb = runs_sb_get(r, h->obj.sb_id);
		struct rcmd *c = NULL;
		int ret;

		if (!sb)
			return runs_fail(err, ENOMEM, "out of memory");
		ret = runs_latest_cmd(r, sb, h->obj.session, &c, err);
		if (ret == 0 && !c)
			ret =
			    runs_fail(err, EPIPE, "no command runs in session %s", h->obj.session);
		if (ret == 0)
			ret =
			    TB_CALL(r, sb, err, t,
				    dt_session_input(t->tb, h->obj.session, c->id, data, len, err));
		if (ret == -EPIPE)
			ret = runs_fail(err, EPIPE, "the latest command of session %s has finished",
					h->obj.session);
		runs_cmd_unuse(r, c);
		return ret;
	}
	return runs_fail(err, EACCES, "read-only");
}

int runs_flush(struct runs *r, struct runs_handle *h, struct dt_error *err)
{
	int ret;

	if (h->node != RN_CODE || h->code.len == 0)
		return 0;
	ret = run_line(r, &h->obj, NULL, true, &h->code, err);
	buf_reset(&h->code);
	return ret;
}

void runs_release(struct runs *r, struct runs_handle *h)
{
	if (!h)
		return;
	if (h->cmd) {
		pthread_mutex_lock(&r->lock);
		h->cmd->handles--;
		pthread_mutex_unlock(&r->lock);
	}
	runs_cmd_unuse(r, h->cmd);
	buf_free(&h->code);
	free(h);
}
