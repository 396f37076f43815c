/*
 * One log for a process. Lines carry a UTC timestamp and the level so a test
 * can tell an unexpected warning from a debug line.
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

static struct {
	enum log_level level;
	enum log_target target;
	int fd;
	char ident[32];
	pthread_mutex_t lock;
} g_log = {
	.level = LOG_LVL_INFO,
	.target = LOG_TO_STDERR,
	.fd = 2,
	.ident = "quaver",
	.lock = PTHREAD_MUTEX_INITIALIZER,
};

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int log_init(const char *ident, enum log_level level, enum log_target target, const char *file)
{
	snprintf(g_log.ident, sizeof(g_log.ident), "%s", ident);
	g_log.level = level;
	g_log.target = target;
	g_log.fd = 2;
	if (target == LOG_TO_FILE) {
		int fd = open(file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		if (fd < 0)
			return -errno;
		g_log.fd = fd;
	} else if (target == LOG_TO_SYSLOG) {
		openlog(g_log.ident, LOG_PID, LOG_DAEMON);
	}
	return 0;
}

void log_set_level(enum log_level level)
{
	g_log.level = level;
}

bool log_enabled(enum log_level level)
{
	return level <= g_log.level;
}

int log_parse_level(const char *word, enum log_level *out)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcmp(word, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

void log_close(void)
{
	if (g_log.target == LOG_TO_FILE && g_log.fd > 2)
		close(g_log.fd);
	else if (g_log.target == LOG_TO_SYSLOG)
		closelog();
	g_log.target = LOG_TO_STDERR;
	g_log.fd = 2;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	static const int syslog_prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
	char msg[2048];
	va_list ap;
	int saved_errno = errno;

	if (!log_enabled(level))
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);

	/* A message from a hostile peer must not forge extra log lines. */
	for (char *p = msg; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';

	if (g_log.target == LOG_TO_SYSLOG) {
		syslog(syslog_prio[level], "%s", msg);
	} else {
		char line[2200];
		struct timespec ts;
		struct tm tm;
		int n;

		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s[%d] %s: %s\n",
			     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
			     tm.tm_sec, ts.tv_nsec / 1000000, g_log.ident, (int)getpid(),
			     level_names[level], msg);
		if (n > (int)sizeof(line) - 1)
			n = sizeof(line) - 1;
		pthread_mutex_lock(&g_log.lock);
		if (write(g_log.fd, line, n) < 0) {
			/* Nowhere left to report it. */
		}
		pthread_mutex_unlock(&g_log.lock);
	}
	errno = saved_errno;
}
