/*
 * Starting or reusing quaverd. quaverd is shared by every quaverfs on the
 * same state dir and outlives them, so it is started in its own session and
 * reparented away from us (double fork): an unmount never takes it down and
 * its death never leaves a zombie in a foreground quaverfs.
 */
#include "local.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "util.h"

char *local_default_state_dir(void)
{
	const char *xdg = getenv("XDG_DATA_HOME");
	const char *home = getenv("HOME");
	struct buf b = BUF_INIT;

	if (xdg && xdg[0] == '/')
		buf_printf(&b, "%s/quaverd", xdg);
	else if (home && home[0] == '/')
		buf_printf(&b, "%s/.local/share/quaverd", home);
	else
		return NULL;
	return buf_steal(&b);
}

static bool is_executable(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

char *local_find_quaverd(const char *explicit_path)
{
	char exe[PATH_MAX], candidate[PATH_MAX + 32];
	ssize_t len;
	const char *path_env;

	if (explicit_path)
		return is_executable(explicit_path) ? realpath(explicit_path, NULL) : NULL;

	len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (len > 0) {
		char *slash;

		exe[len] = '\0';
		slash = strrchr(exe, '/');
		if (slash) {
			*slash = '\0';
			snprintf(candidate, sizeof(candidate), "%s/quaverd", exe);
			if (is_executable(candidate))
				return strdup(candidate);
			/* build/src/fs/quaverfs next to build/src/quaverd/quaverd */
			snprintf(candidate, sizeof(candidate), "%s/../quaverd/quaverd", exe);
			if (is_executable(candidate))
				return realpath(candidate, NULL);
		}
	}

	path_env = getenv("PATH");
	while (path_env && *path_env) {
		const char *end = strchrnul(path_env, ':');
		int dirlen = (int)(end - path_env);

		if (dirlen > 0) {
			snprintf(candidate, sizeof(candidate), "%.*s/quaverd", dirlen, path_env);
			if (is_executable(candidate))
				return strdup(candidate);
		}
		path_env = *end ? end + 1 : end;
	}
	return NULL;
}

bool local_is_running(const char *state_dir)
{
	char path[PATH_MAX];
	bool running = false;
	int fd;

	snprintf(path, sizeof(path), "%s/lock", state_dir);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return false;
	if (flock(fd, LOCK_EX | LOCK_NB) < 0)
		running = errno == EWOULDBLOCK;
	/* Closing drops the lock if we took it. */
	close(fd);
	return running;
}

/* Reads a one-line file of the state dir, without its trailing whitespace. */
static int read_trimmed(const char *state_dir, const char *file, char **out)
{
	char path[PATH_MAX];
	struct buf b = BUF_INIT;
	int ret;

	snprintf(path, sizeof(path), "%s/%s", state_dir, file);
	ret = read_file(path, &b, 4096);
	if (ret < 0)
		goto fail;
	while (b.len > 0 && (b.data[b.len - 1] == '\n' || b.data[b.len - 1] == '\r' ||
			     b.data[b.len - 1] == ' '))
		b.data[--b.len] = '\0';
	if (b.len == 0) {
		ret = -ENODATA;
		goto fail;
	}
	*out = buf_steal(&b);
	return 0;
fail:
	buf_free(&b);
	return ret;
}

int local_read_url(const char *state_dir, char **url)
{
	return read_trimmed(state_dir, "url", url);
}

struct file_id {
	bool exists;
	dev_t dev;
	ino_t ino;
	struct timespec mtime;
};

static struct file_id url_identity(const char *state_dir)
{
	char path[PATH_MAX];
	struct file_id id = {0};
	struct stat st;

	snprintf(path, sizeof(path), "%s/url", state_dir);
	if (stat(path, &st) == 0 && st.st_size > 0) {
		id.exists = true;
		id.dev = st.st_dev;
		id.ino = st.st_ino;
		id.mtime = st.st_mtim;
	}
	return id;
}

static bool same_file(const struct file_id *a, const struct file_id *b)
{
	return a->exists == b->exists && a->dev == b->dev && a->ino == b->ino &&
	       a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec;
}

/* A process that is gone or a zombie (a container's pid 1 may never reap it). */
static bool process_gone(pid_t pid)
{
	char path[64], stat_line[512];
	FILE *f;
	char *close_paren;
	bool gone = true;

	if (kill(pid, 0) < 0 && errno == ESRCH)
		return true;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return true;
	if (fgets(stat_line, sizeof(stat_line), f)) {
		close_paren = strrchr(stat_line, ')');
		gone = close_paren && close_paren[1] == ' ' &&
		       (close_paren[2] == 'Z' || close_paren[2] == 'X');
	}
	fclose(f);
	return gone;
}

/*
 * Forks twice: the grandchild execs quaverd in a new session with its output
 * in the log file; the child exits at once so quaverd is not ours to reap.
 * Returns quaverd's pid or -errno.
 */
static pid_t spawn_detached(const char *bin, const char *state_dir, const char *log_path)
{
	int pipefd[2];
	pid_t child, grandchild = -1;
	int status;

	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return -errno;
	child = fork();
	if (child < 0) {
		int e = errno;

		close(pipefd[0]);
		close(pipefd[1]);
		return -e;
	}
	if (child == 0) {
		pid_t pid;

		close(pipefd[0]);
		setsid();
		pid = fork();
		if (pid == 0) {
			const char *argv[] = {bin,	  "--state-dir", state_dir, "--port",
					      "0",	  "--log-file",	 log_path,  NULL};
			int devnull = open("/dev/null", O_RDWR);
			int logfd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);

			sigset_t none;

			sigemptyset(&none);
			sigprocmask(SIG_SETMASK, &none, NULL);
			if (devnull >= 0)
				dup2(devnull, 0);
			if (logfd >= 0) {
				dup2(logfd, 1);
				dup2(logfd, 2);
			} else if (devnull >= 0) {
				dup2(devnull, 1);
				dup2(devnull, 2);
			}
			close_range(3, ~0U, 0);
			if (chdir("/") < 0) {
				/* quaverd uses absolute paths only */
			}
			execv(bin, (char *const *)argv);
			_exit(127);
		}
		if (write(pipefd[1], &pid, sizeof(pid)) != sizeof(pid)) {
			/* the parent sees a short read */
		}
		_exit(pid < 0 ? 1 : 0);
	}
	close(pipefd[1]);
	if (read(pipefd[0], &grandchild, sizeof(grandchild)) != sizeof(grandchild))
		grandchild = -ECHILD;
	close(pipefd[0]);
	while (waitpid(child, &status, 0) < 0 && errno == EINTR)
		;
	return grandchild;
}

/* The last lines of quaverd's log, for a message on why it did not start. */
static void log_tail(const char *log_path, char *out, size_t size)
{
	struct buf b = BUF_INIT;
	const char *start;
	int lines = 0;

	out[0] = '\0';
	if (read_file(log_path, &b, 1 << 20) < 0 || b.len == 0)
		goto out;
	start = b.data + b.len;
	while (start > b.data && lines < 3) {
		start--;
		if (*start == '\n' && start != b.data + b.len - 1)
			lines++;
	}
	if (*start == '\n')
		start++;
	copy_str(out, size, start);
	for (char *p = out; *p; p++)
		if (*p == '\n')
			*p = ' ';
out:
	buf_free(&b);
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

int local_quaverd_ensure(const char *state_dir, const char *quaverd_bin, int wait_ms, char **url,
			 char **token, bool *started, char *msg, size_t msgsize)
{
	char log_path[PATH_MAX];
	struct file_id before = url_identity(state_dir);
	int64_t deadline = now_mono_ms() + wait_ms;
	pid_t pid = 0;
	int ret;

	*started = false;
	snprintf(log_path, sizeof(log_path), "%s/quaverd.log", state_dir);
	if (!local_is_running(state_dir)) {
		if (!quaverd_bin) {
			snprintf(msg, msgsize,
				 "no quaverd to start: none next to quaverfs nor on $PATH "
				 "(use -o quaverd=PATH, or set DAYTONA_API_KEY for Daytona cloud)");
			return -ENOENT;
		}
		/* quaverd makes it 0700 itself; the log file lives in it from the start. */
		ret = mkdir_p(state_dir, 0700);
		if (ret < 0) {
			snprintf(msg, msgsize, "cannot create the state dir %s: %s", state_dir,
				 strerror(-ret));
			return ret;
		}
		pid = spawn_detached(quaverd_bin, state_dir, log_path);
		if (pid < 0) {
			snprintf(msg, msgsize, "cannot start %s: %s", quaverd_bin, strerror(-pid));
			return pid;
		}
		*started = true;
		log_info("started quaverd (pid %d) on %s", (int)pid, state_dir);
	}

	for (;;) {
		struct file_id now = url_identity(state_dir);
		bool running = local_is_running(state_dir);

		/* A url written by the quaverd we started, or by the one that was running. */
		if (now.exists && running && (!*started || !same_file(&now, &before)))
			break;
		if (*started && process_gone(pid)) {
			char tail[400];

			if (running) {
				/* Another quaverfs won the race: use its quaverd. */
				*started = false;
				goto next;
			}
			log_tail(log_path, tail, sizeof(tail));
			snprintf(msg, msgsize, "quaverd exited at start (log %s): %s", log_path,
				 tail[0] ? tail : "no output");
			return -EIO;
		}
next:
		if (now_mono_ms() >= deadline) {
			snprintf(msg, msgsize, "quaverd on %s did not write its url within %d ms (log %s)",
				 state_dir, wait_ms, log_path);
			return -ETIMEDOUT;
		}
		sleep_ms(50);
	}

	ret = local_read_url(state_dir, url);
	if (ret < 0) {
		snprintf(msg, msgsize, "cannot read %s/url: %s", state_dir, strerror(-ret));
		return ret;
	}
	ret = read_trimmed(state_dir, "token", token);
	if (ret < 0) {
		free(*url);
		*url = NULL;
		snprintf(msg, msgsize, "cannot read %s/token: %s", state_dir, strerror(-ret));
		return ret;
	}
	return 0;
}
