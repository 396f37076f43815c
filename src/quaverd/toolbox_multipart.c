/*
 * Streaming multipart/form-data reader (toolbox_multipart.h).
 *
 * The body is seen as if it began with CRLF, so every boundary, the first
 * included, is the same delimiter "\r\n--BOUNDARY". Part data is handed out
 * as soon as it cannot be the start of a delimiter: the reader keeps at most
 * the delimiter's length minus one byte back.
 */
#include "toolbox_multipart.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>
#include <unistd.h>

enum mp_state { MP_PREAMBLE, MP_AFTER_DELIM, MP_HEADERS, MP_BODY, MP_DONE, MP_DEAD };

struct mp_reader {
	const struct mp_callbacks *cb;
	void *ctx;
	enum mp_state state;
	char delim[MP_BOUNDARY_MAX + 5]; /* "\r\n--" + boundary */
	size_t dlen;
	char *buf;
	size_t len, cap;
};

/* ---- Content-Type / Content-Disposition parameters -------------------------- */

static const char *skip_ws(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

/*
 * Reads one "; key=value" parameter starting at @p (after the ';'). Values
 * may be tokens or quoted strings with backslash escapes. Returns the
 * position after it, or NULL at the end or on garbage.
 */
static const char *next_param(const char *p, char *key, size_t ksize, char *val, size_t vsize)
{
	size_t k = 0, v = 0;

	p = skip_ws(p);
	while (*p == ';')
		p = skip_ws(p + 1);
	if (!*p)
		return NULL;
	while (*p && *p != '=' && *p != ';' && *p != ' ' && *p != '\t') {
		if (k + 1 < ksize)
			key[k++] = *p;
		p++;
	}
	key[k] = '\0';
	p = skip_ws(p);
	if (*p != '=') {
		val[0] = '\0';
		return p; /* a bare word such as "form-data" */
	}
	p = skip_ws(p + 1);
	if (*p == '"') {
		p++;
		while (*p && *p != '"') {
			if (*p == '\\' && p[1])
				p++;
			if (v + 1 < vsize)
				val[v++] = *p;
			p++;
		}
		if (*p != '"')
			return NULL;
		p++;
	} else {
		while (*p && *p != ';' && *p != ' ' && *p != '\t') {
			if (v + 1 < vsize)
				val[v++] = *p;
			p++;
		}
	}
	val[v] = '\0';
	return p;
}

int mp_boundary(const char *content_type, char *out, size_t size)
{
	char key[64], val[256];
	const char *p;

	if (!content_type)
		return -EINVAL;
	p = skip_ws(content_type);
	if (strncasecmp(p, "multipart/", 10) != 0)
		return -EINVAL;
	p = strchr(p, ';');
	while (p && (p = next_param(p, key, sizeof(key), val, sizeof(val))) != NULL) {
		size_t n = strlen(val);

		if (strcasecmp(key, "boundary") != 0)
			continue;
		if (n == 0 || n > MP_BOUNDARY_MAX || n + 1 > size)
			return -EINVAL;
		memcpy(out, val, n + 1);
		return 0;
	}
	return -EINVAL;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* RFC 5987 ext-value: "utf-8''%e2%82%ac.txt" -> the bytes. False when not utf-8 or malformed. */
static bool decode_ext_value(const char *in, char *out, size_t size)
{
	const char *q = strstr(in, "''");
	size_t o = 0;

	if (!q || (size_t)(q - in) != 5 || strncasecmp(in, "utf-8", 5) != 0)
		return false;
	for (const char *p = q + 2; *p; p++) {
		char c = *p;

		if (c == '%') {
			int hi = hexval(p[1]), lo = hi < 0 ? -1 : hexval(p[2]);
			if (lo < 0)
				return false;
			c = (char)(hi * 16 + lo);
			p += 2;
		}
		if (c == '\0' || o + 1 >= size)
			return false;
		out[o++] = c;
	}
	out[o] = '\0';
	return true;
}

/* Copies with truncation (field names and filenames longer than our fields are cut). */
static void set_str(char *dst, size_t size, const char *src)
{
	size_t n = strnlen(src, size - 1);

	memcpy(dst, src, n);
	dst[n] = '\0';
}

static void parse_disposition(const char *value, struct mp_part *part)
{
	char key[64], val[2048], ext[1024];
	const char *p = value;
	bool have_ext = false;

	while ((p = next_param(p, key, sizeof(key), val, sizeof(val))) != NULL) {
		if (!strcasecmp(key, "name")) {
			set_str(part->name, sizeof(part->name), val);
		} else if (!strcasecmp(key, "filename")) {
			set_str(part->filename, sizeof(part->filename), val);
			part->has_filename = true;
		} else if (!strcasecmp(key, "filename*")) {
			have_ext = decode_ext_value(val, ext, sizeof(ext));
		}
	}
	if (have_ext) {
		set_str(part->filename, sizeof(part->filename), ext);
		part->has_filename = true;
	}
}

/* Parses the header block @h (@len bytes, lines separated by CRLF) into @part. */
static int parse_headers(char *h, size_t len, struct mp_part *part)
{
	char *line = h, *end = h + len;

	memset(part, 0, sizeof(*part));
	while (line < end) {
		char *eol = memmem(line, (size_t)(end - line), "\r\n", 2);
		char *colon;

		if (!eol)
			eol = end;
		*eol = '\0';
		if (memchr(line, '\0', (size_t)(eol - line)))
			return -EBADMSG;
		colon = strchr(line, ':');
		if (!colon) {
			if (*line)
				return -EBADMSG;
		} else {
			*colon = '\0';
			if (!strcasecmp(line, "content-disposition"))
				parse_disposition(skip_ws(colon + 1), part);
			else if (!strcasecmp(line, "content-type"))
				set_str(part->content_type, sizeof(part->content_type),
					skip_ws(colon + 1));
		}
		line = eol + 2;
	}
	return 0;
}

/* ---- the state machine -------------------------------------------------------- */

struct mp_reader *mp_new(const char *boundary, const struct mp_callbacks *cb, void *ctx)
{
	struct mp_reader *r;
	size_t blen = strlen(boundary);

	if (blen == 0 || blen > MP_BOUNDARY_MAX)
		return NULL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->cap = MP_CHUNK + MP_HEADERS_MAX + sizeof(r->delim);
	r->buf = malloc(r->cap);
	if (!r->buf) {
		free(r);
		return NULL;
	}
	r->cb = cb;
	r->ctx = ctx;
	r->dlen = (size_t)snprintf(r->delim, sizeof(r->delim), "\r\n--%s", boundary);
	/* The body is read as if it started with CRLF: the first boundary needs none. */
	memcpy(r->buf, "\r\n", 2);
	r->len = 2;
	r->state = MP_PREAMBLE;
	return r;
}

void mp_free(struct mp_reader *r)
{
	if (!r)
		return;
	free(r->buf);
	free(r);
}

static void consume(struct mp_reader *r, size_t n)
{
	memmove(r->buf, r->buf + n, r->len - n);
	r->len -= n;
}

/* How many leading bytes cannot start a delimiter (when none is in the buffer). */
static size_t safe_prefix(const struct mp_reader *r)
{
	return r->len >= r->dlen ? r->len - (r->dlen - 1) : 0;
}

/*
 * Finds the first real delimiter: "\r\n--BOUNDARY" followed by "--" or by
 * optional spaces and CRLF. Like Go's mime/multipart, a boundary string
 * followed by anything else is part of the data. Returns its offset, or -1
 * with *safe set to how many leading bytes cannot belong to one (the rest
 * must wait for more input).
 */
static ssize_t find_delim(const struct mp_reader *r, bool at_end, size_t *safe)
{
	size_t from = 0;

	for (;;) {
		char *hit = memmem(r->buf + from, r->len - from, r->delim, r->dlen);
		size_t i, j;

		if (!hit) {
			*safe = safe_prefix(r) > from ? safe_prefix(r) : from;
			return -1;
		}
		i = (size_t)(hit - r->buf);
		j = i + r->dlen;
		if (j + 2 <= r->len && r->buf[j] == '-' && r->buf[j + 1] == '-')
			return (ssize_t)i;
		while (j < r->len && (r->buf[j] == ' ' || r->buf[j] == '\t') &&
		       j - i - r->dlen < 256)
			j++;
		if (j + 2 > r->len) {
			if (at_end)
				return (ssize_t)i; /* a truncated body: AFTER_DELIM refuses it */
			*safe = i;
			return -1;
		}
		if (r->buf[j] == '\r' && r->buf[j + 1] == '\n')
			return (ssize_t)i;
		from = i + 1;
	}
}

/* Runs the machine over what is buffered. 0 when it needs more bytes. */
static int process(struct mp_reader *r, bool at_end)
{
	for (;;) {
		char *hit;
		ssize_t at;
		size_t i;
		int rc;

		switch (r->state) {
		case MP_PREAMBLE:
			at = find_delim(r, at_end, &i);
			if (at < 0) {
				consume(r, i);
				return 0;
			}
			consume(r, (size_t)at + r->dlen);
			r->state = MP_AFTER_DELIM;
			break;
		case MP_AFTER_DELIM:
			if (r->len >= 2 && r->buf[0] == '-' && r->buf[1] == '-') {
				r->state = MP_DONE;
				break;
			}
			/* Transport padding (spaces, tabs) may sit before the CRLF. */
			for (i = 0; i < r->len && (r->buf[i] == ' ' || r->buf[i] == '\t'); i++)
				;
			if (i > 256)
				return -EBADMSG;
			if (r->len < i + 2) {
				if (at_end)
					return -EBADMSG;
				return 0;
			}
			if (r->buf[i] != '\r' || r->buf[i + 1] != '\n')
				return -EBADMSG;
			consume(r, i + 2);
			r->state = MP_HEADERS;
			break;
		case MP_HEADERS: {
			struct mp_part part;
			size_t hlen;

			if (r->len >= 2 && r->buf[0] == '\r' && r->buf[1] == '\n') {
				hlen = 0; /* a part without headers */
			} else {
				hit = memmem(r->buf, r->len, "\r\n\r\n", 4);
				if (!hit) {
					if (r->len > MP_HEADERS_MAX)
						return -EBADMSG;
					return 0;
				}
				hlen = (size_t)(hit - r->buf) + 2;
			}
			if (hlen > MP_HEADERS_MAX)
				return -EBADMSG;
			rc = parse_headers(r->buf, hlen, &part);
			if (rc < 0)
				return rc;
			consume(r, hlen + 2);
			r->state = MP_BODY;
			if (r->cb->part_begin && (rc = r->cb->part_begin(r->ctx, &part)) < 0)
				return rc;
			break;
		}
		case MP_BODY:
			at = find_delim(r, at_end, &i);
			if (at >= 0)
				i = (size_t)at;
			if (i > 0 && r->cb->part_data &&
			    (rc = r->cb->part_data(r->ctx, r->buf, i)) < 0)
				return rc;
			if (at < 0) {
				consume(r, i);
				return 0;
			}
			consume(r, i + r->dlen);
			r->state = MP_AFTER_DELIM;
			if (r->cb->part_end && (rc = r->cb->part_end(r->ctx)) < 0)
				return rc;
			break;
		case MP_DONE:
			r->len = 0; /* the epilogue is ignored */
			return 0;
		case MP_DEAD:
			return -EBADMSG;
		}
	}
}

int mp_feed(struct mp_reader *r, const void *data, size_t len)
{
	const char *p = data;

	if (r->state == MP_DEAD)
		return -EBADMSG;
	while (len > 0) {
		size_t room = r->cap - r->len, n = len < room ? len : room;
		int rc;

		if (r->state == MP_DONE)
			return 0;
		if (n == 0) {
			/* Only a header block larger than the limit can fill the buffer. */
			r->state = MP_DEAD;
			return -EBADMSG;
		}
		memcpy(r->buf + r->len, p, n);
		r->len += n;
		p += n;
		len -= n;
		rc = process(r, false);
		if (rc < 0) {
			r->state = MP_DEAD;
			return rc;
		}
	}
	return 0;
}

int mp_finish(struct mp_reader *r)
{
	int rc;

	if (r->state == MP_DEAD)
		return -EBADMSG;
	rc = process(r, true);
	if (rc < 0) {
		r->state = MP_DEAD;
		return rc;
	}
	return r->state == MP_DONE ? 0 : -EBADMSG;
}

int mp_parse_mem(const char *boundary, const void *data, size_t len, const struct mp_callbacks *cb,
		 void *ctx)
{
	struct mp_reader *r = mp_new(boundary, cb, ctx);
	int rc;

	if (!r)
		return -EINVAL;
	rc = mp_feed(r, data, len);
	if (rc == 0)
		rc = mp_finish(r);
	mp_free(r);
	return rc;
}

int mp_parse_fd(const char *boundary, int fd, const struct mp_callbacks *cb, void *ctx)
{
	struct mp_reader *r = mp_new(boundary, cb, ctx);
	char *chunk;
	int rc = 0;

	if (!r)
		return -EINVAL;
	chunk = malloc(MP_CHUNK);
	if (!chunk) {
		mp_free(r);
		return -ENOMEM;
	}
	for (;;) {
		ssize_t n = read(fd, chunk, MP_CHUNK);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			break;
		}
		if (n == 0) {
			rc = mp_finish(r);
			break;
		}
		rc = mp_feed(r, chunk, (size_t)n);
		if (rc < 0)
			break;
	}
	free(chunk);
	mp_free(r);
	return rc;
}
