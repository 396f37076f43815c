#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>

int fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

int write_file_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
	char tmp[PATH_MAX], dir[PATH_MAX];
	const char *p = data;
	char *slash;
	int fd, rc = 0;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fchmod(fd, mode) < 0)
		goto fail_errno;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			goto fail_errno;
		}
		p += n;
		len -= (size_t)n;
	}
	if (fsync(fd) < 0)
		goto fail_errno;
	if (close(fd) < 0) {
		fd = -1;
		goto fail_errno;
	}
	fd = -1;
	if (rename(tmp, path) < 0)
		goto fail_errno;
	copy_str(dir, sizeof(dir), path);
	slash = strrchr(dir, '/');
	if (slash) {
		if (slash == dir)
			slash[1] = '\0';
		else
			*slash = '\0';
	} else {
		copy_str(dir, sizeof(dir), ".");
	}
	return fsync_dir(dir);

fail_errno:
	rc = -errno;
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	return rc;
}

int read_file(const char *path, struct buf *out, size_t max)
{
	char chunk[65536];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int rc = 0;

	if (fd < 0)
		return -errno;
	for (;;) {
		ssize_t n = read(fd, chunk, sizeof(chunk));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			break;
		}
		if (n == 0)
			break;
		if (out->len + (size_t)n > max) {
			rc = -EFBIG;
			break;
		}
		rc = buf_append(out, chunk, (size_t)n);
		if (rc)
			break;
	}
	close(fd);
	return rc;
}

int mkdir_p(const char *path, mode_t mode)
{
	char tmp[PATH_MAX];

	if (!copy_str(tmp, sizeof(tmp), path))
		return -ENAMETOOLONG;
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, mode) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(tmp, mode) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/* Removes the contents of the directory open at @dfd, never following links. */
static int rm_rf_at(int dfd)
{
	DIR *d = fdopendir(dfd);
	struct dirent *de;
	int rc = 0;

	if (!d) {
		close(dfd);
		return -errno;
	}
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (unlinkat(dirfd(d), de->d_name, 0) == 0)
			continue;
		if (errno == EISDIR || errno == EPERM) {
			int sub = openat(dirfd(d), de->d_name,
					 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub < 0) {
				rc = -errno;
				continue;
			}
			/* A directory without write or search bits still has to go. */
			fchmod(sub, 0700);
			int r = rm_rf_at(sub);
			if (r && !rc)
				rc = r;
			if (unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR) < 0 && !rc)
				rc = -errno;
		} else if (errno != ENOENT && !rc) {
			rc = -errno;
		}
	}
	closedir(d);
	return rc;
}

int rm_rf(const char *path)
{
	struct stat st;
	int fd, rc;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISDIR(st.st_mode))
		return unlink(path) < 0 ? -errno : 0;
	fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	fchmod(fd, 0700);
	rc = rm_rf_at(fd);
	if (rmdir(path) < 0 && !rc)
		rc = -errno;
	return rc;
}

int random_bytes(void *buf, size_t len)
{
	char *p = buf;

	while (len > 0) {
		ssize_t n = getrandom(p, len, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

void uuid4(char out[37])
{
	unsigned char b[16];

	if (random_bytes(b, sizeof(b)) < 0)
		abort(); /* no randomness means no safe ids or tokens */
	b[6] = (b[6] & 0x0f) | 0x40;
	b[8] = (b[8] & 0x3f) | 0x80;
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
		 b[13], b[14], b[15]);
}

void random_hex(char *out, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char b[64];

	while (len > 0) {
		size_t n = len < sizeof(b) ? len : sizeof(b);
		if (random_bytes(b, n) < 0)
			abort();
		for (size_t i = 0; i < n; i++) {
			*out++ = hex[b[i] >> 4];
			*out++ = hex[b[i] & 15];
		}
		len -= n;
	}
	*out = '\0';
}

int64_t now_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t now_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void iso8601_ms(int64_t wall_ms, char out[32])
{
	time_t secs = (time_t)(wall_ms / 1000);
	struct tm tm;

	char wide[96]; /* room for any int, so the compiler can prove no truncation */

	gmtime_r(&secs, &tm);
	snprintf(wide, sizeof(wide), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		 (int)(wall_ms % 1000));
	copy_str(out, 32, wide);
}

int parse_iso8601_ms(const char *s, int64_t *wall_ms)
{
	struct tm tm = {0};
	int ms = 0, consumed = 0;

	if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
		   &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &consumed) != 6)
		return -EINVAL;
	s += consumed;
	if (*s == '.') {
		int digits = 0;
		for (s++; *s >= '0' && *s <= '9'; s++, digits++)
			if (digits < 3)
				ms = ms * 10 + (*s - '0');
		while (digits++ < 3)
			ms *= 10;
	}
	if (*s != 'Z' || s[1])
		return -EINVAL;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	*wall_ms = (int64_t)timegm(&tm) * 1000 + ms;
	return 0;
}

int run_argv(const char *const argv[], struct buf *output)
{
	int pipefd[2] = {-1, -1};
	int status;
	pid_t pid, parent;

	if (output && pipe2(pipefd, O_CLOEXEC) < 0)
		return -errno;
	parent = getpid();
	pid = fork();
	if (pid < 0) {
		int err = errno;
		if (output) {
			close(pipefd[0]);
			close(pipefd[1]);
		}
		return -err;
	}
	if (pid == 0) {
		int devnull = open("/dev/null", O_RDWR);
		sigset_t none;

		/*
		 * A tar left running by a SIGKILLed quaverd would keep writing
		 * into a tree the next quaverd removes: die with the parent. The
		 * forking thread waits for us, so it cannot exit first.
		 */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		if (devnull >= 0)
			dup2(devnull, 0);
		if (output) {
			dup2(pipefd[1], 1);
			dup2(pipefd[1], 2);
		} else if (devnull >= 0) {
			dup2(devnull, 1);
		}
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	if (output) {
		char chunk[4096];
		ssize_t n;

		close(pipefd[1]);
		while ((n = read(pipefd[0], chunk, sizeof(chunk))) != 0) {
			if (n < 0) {
				if (errno == EINTR)
					continue;
				break;
			}
			if (output->len < 65536)
				buf_append(output, chunk, (size_t)n);
		}
		close(pipefd[0]);
	}
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR)
			return -errno;
	}
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	return 128 + WTERMSIG(status);
}

bool copy_str(char *dst, size_t size, const char *src)
{
	size_t n = strlen(src);

	if (size == 0)
		return false;
	if (n >= size) {
		memcpy(dst, src, size - 1);
		dst[size - 1] = '\0';
		return false;
	}
	memcpy(dst, src, n + 1);
	return true;
}

int parse_int64(const char *s, int64_t min, int64_t max, int64_t *out)
{
	char *end;
	long long v;

	if (!s || !*s)
		return -EINVAL;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (*end || end == s)
		return -EINVAL;
	if (errno == ERANGE || v < min || v > max)
		return -ERANGE;
	*out = v;
	return 0;
}
