/* Logging shared by quaverfs and quaverd: stderr, a file or syslog. */
#ifndef QUAVER_LOG_H
#define QUAVER_LOG_H

#include <stdbool.h>

enum log_level { LOG_LVL_ERROR = 0, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

enum log_target { LOG_TO_STDERR = 0, LOG_TO_FILE, LOG_TO_SYSLOG };

/* Returns 0, or -errno when the log file cannot be opened. */
int log_init(const char *ident, enum log_level level, enum log_target target, const char *file);
void log_set_level(enum log_level level);
bool log_enabled(enum log_level level);
int log_parse_level(const char *word, enum log_level *out);
void log_close(void);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...)                                                                             \
	do {                                                                                       \
		if (log_enabled(LOG_LVL_DEBUG))                                                    \
			log_msg(LOG_LVL_DEBUG, __VA_ARGS__);                                       \
	} while (0)

#endif
