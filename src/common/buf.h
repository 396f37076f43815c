/* A growable byte buffer, always NUL-terminated so text can be read in place. */
#ifndef QUAVER_BUF_H
#define QUAVER_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct buf {
	char *data; /* NULL until the first append */
	size_t len;
	size_t cap;
};

#define BUF_INIT {NULL, 0, 0}

/* Each returns 0 or -ENOMEM. */
int buf_reserve(struct buf *b, size_t extra);
int buf_append(struct buf *b, const void *data, size_t len);
int buf_append_str(struct buf *b, const char *s);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vprintf(struct buf *b, const char *fmt, va_list ap);
void buf_reset(struct buf *b);
void buf_free(struct buf *b);
/* Hands the storage to the caller (never NULL on success: "" for empty). */
char *buf_steal(struct buf *b);
/* Returns the text, "" when empty. */
const char *buf_str(const struct buf *b);

#endif
