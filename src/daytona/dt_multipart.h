/*
 * A multipart/form-data reader for answers held in memory: the toolbox's
 * POST /files/bulk-download (daytona-api.md section 6). Self-contained (no
 * libcurl, no cJSON) so a fuzzer can drive dt_multipart_parse directly.
 */
#ifndef QUAVER_DT_MULTIPART_H
#define QUAVER_DT_MULTIPART_H

#include <stdbool.h>
#include <stddef.h>

/* Longest boundary taken from a Content-Type (RFC 2046 allows 70). */
#define DT_MULTIPART_MAX_BOUNDARY 200
/* Longest header block of one part. */
#define DT_MULTIPART_MAX_HEADERS 16384

struct dt_multipart_part {
	const char *name;     /* Content-Disposition name, "" when absent */
	const char *filename; /* filename*=utf-8''... decoded, else filename; NULL when absent */
	const char *content_type; /* "" when absent */
	const char *data;	  /* points into the body */
	size_t len;
	/* The body ended inside this part (no delimiter after it): its data is cut short. */
	bool truncated;
};

/* Returns 0 to go on; anything else stops the parse and is returned by it. */
typedef int (*dt_multipart_fn)(void *arg, const struct dt_multipart_part *part);

/*
 * Walks the parts of @body, whose boundary comes from @content_type
 * ("multipart/form-data; boundary=..."), calling @fn for each in order.
 * Returns 0 once the close delimiter ("--boundary--") is reached; -EINVAL
 * when @content_type names no multipart boundary; -EBADMSG when the body is
 * not in that form or ends before the close delimiter (the parts that ended
 * at a delimiter have been given to @fn; one cut short inside its data is
 * given to @fn with truncated set); -ENOMEM; or what @fn returned.
 */
int dt_multipart_parse(const char *content_type, const char *body, size_t len, dt_multipart_fn fn,
		       void *arg);

/* The boundary parameter of @content_type into @out. 0 or -EINVAL. */
int dt_multipart_boundary(const char *content_type, char *out, size_t size);

#endif
