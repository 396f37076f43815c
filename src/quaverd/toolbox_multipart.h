/*
 * A streaming multipart/form-data reader (RFC 7578 over RFC 2046): bytes go
 * in by pieces of any size, parts come out through callbacks, and memory
 * stays bounded (one buffer of MP_CHUNK plus the header limit) whatever
 * the body's size. Knows nothing of HTTP or files, so it can be fuzzed
 * alone (mp_parse_mem).
 */
#ifndef QUAVERD_TOOLBOX_MULTIPART_H
#define QUAVERD_TOOLBOX_MULTIPART_H

#include <stdbool.h>
#include <stddef.h>

#define MP_BOUNDARY_MAX 70   /* RFC 2046 */
#define MP_HEADERS_MAX 16384 /* of one part */
#define MP_CHUNK 65536

struct mp_part {
	char name[256];	     /* the form field's name */
	char filename[1024]; /* "" when none */
	bool has_filename;
	char content_type[128];
};

/* Each returns 0, or a negative errno that stops the parse and is returned by feed/finish. */
struct mp_callbacks {
	int (*part_begin)(void *ctx, const struct mp_part *part);
	int (*part_data)(void *ctx, const void *data, size_t len);
	int (*part_end)(void *ctx);
};

struct mp_reader;

/* The boundary parameter of a Content-Type header. 0, or -EINVAL when missing or malformed. */
int mp_boundary(const char *content_type, char *out, size_t size);

struct mp_reader *mp_new(const char *boundary, const struct mp_callbacks *cb, void *ctx);
/* 0, -EBADMSG (malformed), or a callback's error; after an error the reader is dead. */
int mp_feed(struct mp_reader *r, const void *data, size_t len);
/* 0 when the closing boundary was seen, else -EBADMSG (a truncated body). */
int mp_finish(struct mp_reader *r);
void mp_free(struct mp_reader *r);

/* Whole-buffer and whole-file conveniences (the file read by pieces of MP_CHUNK). */
int mp_parse_mem(const char *boundary, const void *data, size_t len, const struct mp_callbacks *cb,
		 void *ctx);
int mp_parse_fd(const char *boundary, int fd, const struct mp_callbacks *cb, void *ctx);

#endif
