/*
 * multipart/form-data answers (RFC 7578 on RFC 2046), as the toolbox's
 * bulk-download sends them: one part per requested path, named "file" or
 * "error", with the path in filename (and filename*), a Content-Type and
 * usually a Content-Length. The body comes from a remote peer: every length
 * is checked against the buffer, nothing is assumed to be text, and a body
 * that ends early (the daemon's answer to a read failure mid-file) is
 * reported as such, never as a shorter file.
 */
#include "dt_multipart.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"

/* A parameter value of a header: a token or a quoted-string, unescaped. */
static const char *param_value(const char *p, struct buf *out)
{
	if (*p == '"') {
		for (p++; *p && *p != '"'; p++) {
			if (*p == '\\' && p[1])
				p++;
			if (buf_append(out, p, 1))
				return NULL;
		}
		return *p == '"' ? p + 1 : p;
	}
	while (*p && *p != ';') {
		if (buf_append(out, p, 1))
			return NULL;
		p++;
	}
	while (out->len > 0 && isspace((unsigned char)out->data[out->len - 1]))
		out->data[--out->len] = '\0';
	return p;
}

/*
 * Calls @fn for each "key=value" parameter after the first ';' of @header
 * (a Content-Type or Content-Disposition value). Returns 0, -ENOMEM, or
 * what @fn returned.
 */
static int each_param(const char *header,
		      int (*fn)(void *arg, const char *key, size_t key_len, const char *value),
		      void *arg)
{
	const char *p = strchr(header, ';');
	struct buf value = BUF_INIT;
	int rc = 0;

	while (p && *p == ';' && rc == 0) {
		const char *key;
		size_t key_len;

		p++;
		while (*p == ' ' || *p == '\t')
			p++;
		key = p;
		while (*p && *p != '=' && *p != ';')
			p++;
		key_len = (size_t)(p - key);
		while (key_len > 0 && isspace((unsigned char)key[key_len - 1]))
			key_len--;
		if (*p != '=')
			continue; /* a parameter without a value */
		p++;
		while (*p == ' ' || *p == '\t')
			p++;
		buf_reset(&value);
		p = param_value(p, &value);
		if (!p) {
			rc = -ENOMEM;
			break;
		}
		rc = fn(arg, key, key_len, buf_str(&value));
		/* Skips whatever follows a quoted value up to the next parameter. */
		while (*p && *p != ';')
			p++;
	}
	buf_free(&value);
	return rc;
}

struct boundary_arg {
	char *out;
	size_t size;
	bool found;
};

static int take_boundary(void *arg, const char *key, size_t key_len, const char *value)
{
	struct boundary_arg *b = arg;
	size_t len = strlen(value);

	if (key_len != 8 || strncasecmp(key, "boundary", 8) != 0 || b->found)
		return 0;
	if (len == 0 || len > DT_MULTIPART_MAX_BOUNDARY || len >= b->size)
		return -EINVAL;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)value[i] < 0x20 || value[i] == 0x7f)
			return -EINVAL;
	memcpy(b->out, value, len + 1);
	b->found = true;
	return 0;
}

int dt_multipart_boundary(const char *content_type, char *out, size_t size)
{
	struct boundary_arg b = {out, size, false};
	int rc;

	if (!content_type)
		return -EINVAL;
	while (*content_type == ' ' || *content_type == '\t')
		content_type++;
	if (strncasecmp(content_type, "multipart/", 10) != 0)
		return -EINVAL;
	rc = each_param(content_type, take_boundary, &b);
	if (rc == -ENOMEM)
		return rc;
	return rc == 0 && b.found ? 0 : -EINVAL;
}

struct part_headers {
	struct buf name, filename, filename_star, content_type;
	bool has_filename;
	bool has_filename_star;
	int64_t content_length; /* -1: absent or not a number */
};

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)tolower((unsigned char)c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/*
 * filename*=utf-8''%2Fa%20b (RFC 5987/8187). False when it is not in that
 * form, names another charset, or decodes to a NUL.
 */
static bool decode_ext_value(const char *value, struct buf *out)
{
	const char *q1 = strchr(value, '\''), *q2, *p;

	if (!q1 || !(q2 = strchr(q1 + 1, '\'')))
		return false;
	if (!((q1 - value == 5 && strncasecmp(value, "utf-8", 5) == 0) ||
	      (q1 - value == 8 && strncasecmp(value, "us-ascii", 8) == 0)))
		return false;
	for (p = q2 + 1; *p; p++) {
		char ch = *p;

		if (ch == '%') {
			int hi = hex_digit(p[1]), lo = hi < 0 ? -1 : hex_digit(p[2]);

			if (hi < 0 || lo < 0)
				return false;
			ch = (char)(hi * 16 + lo);
			if (ch == '\0')
				return false;
			p += 2;
		}
		if (buf_append(out, &ch, 1))
			return false;
	}
	return true;
}

static int take_disposition_param(void *arg, const char *key, size_t key_len, const char *value)
{
	struct part_headers *h = arg;

	if (key_len == 4 && strncasecmp(key, "name", 4) == 0) {
		buf_reset(&h->name);
		return buf_append_str(&h->name, value);
	}
	if (key_len == 8 && strncasecmp(key, "filename", 8) == 0) {
		buf_reset(&h->filename);
		h->has_filename = true;
		return buf_append_str(&h->filename, value);
	}
	if (key_len == 9 && strncasecmp(key, "filename*", 9) == 0) {
		buf_reset(&h->filename_star);
		h->has_filename_star = decode_ext_value(value, &h->filename_star);
	}
	return 0;
}

static int64_t parse_length(const char *s)
{
	int64_t v = 0;

	if (!isdigit((unsigned char)*s))
		return -1;
	for (; isdigit((unsigned char)*s); s++) {
		if (v > (INT64_MAX - 9) / 10)
			return -1;
		v = v * 10 + (*s - '0');
	}
	while (*s == ' ' || *s == '\t')
		s++;
	return *s ? -1 : v;
}

/* One header line "Name: value" (without its CRLF). */
static int take_header(struct part_headers *h, const char *line, size_t len)
{
	const char *colon = memchr(line, ':', len);
	struct buf value = BUF_INIT;
	size_t name_len, vstart;
	int rc = 0;

	if (!colon)
		return 0; /* not a header: ignored, as a lenient reader does */
	name_len = (size_t)(colon - line);
	vstart = name_len + 1;
	while (vstart < len && (line[vstart] == ' ' || line[vstart] == '\t'))
		vstart++;
	/* A NUL inside a header value would cut it short: refuse the whole part. */
	if (memchr(line, '\0', len))
		return -EBADMSG;
	if (buf_append(&value, line + vstart, len - vstart))
		return -ENOMEM;
	if (name_len == 19 && strncasecmp(line, "Content-Disposition", 19) == 0) {
		rc = each_param(buf_str(&value), take_disposition_param, h);
	} else if (name_len == 12 && strncasecmp(line, "Content-Type", 12) == 0) {
		buf_reset(&h->content_type);
		rc = buf_append_str(&h->content_type, buf_str(&value));
	} else if (name_len == 14 && strncasecmp(line, "Content-Length", 14) == 0) {
		h->content_length = parse_length(buf_str(&value));
	}
	buf_free(&value);
	return rc;
}

static void part_headers_free(struct part_headers *h)
{
	buf_free(&h->name);
	buf_free(&h->filename);
	buf_free(&h->filename_star);
	buf_free(&h->content_type);
}

struct walk {
	const char *body;
	size_t len;
	char delim[DT_MULTIPART_MAX_BOUNDARY + 3]; /* "--" boundary */
	size_t dlen;
};

/*
 * True when a delimiter at @pos really ends a part: RFC 2046 puts "--",
 * transport padding or CRLF after it; anything else is data that merely
 * starts like the boundary.
 */
static bool delimiter_ends_here(const struct walk *w, size_t pos)
{
	size_t after = pos + w->dlen;

	if (pos > w->len || w->len - pos < w->dlen || memcmp(w->body + pos, w->delim, w->dlen) != 0)
		return false;
	if (after == w->len)
		return true;
	if (w->body[after] == '\r' || w->body[after] == ' ' || w->body[after] == '\t')
		return true;
	return after + 1 < w->len && w->body[after] == '-' && w->body[after + 1] == '-';
}

/* The next "\r\n--boundary" at or after @from that ends a part, or SIZE_MAX. */
static size_t find_delimiter(const struct walk *w, size_t from)
{
	while (from < w->len) {
		const char *hit = memmem(w->body + from, w->len - from, "\r\n", 2);
		size_t at;

		if (!hit)
			break;
		at = (size_t)(hit - w->body);
		if (delimiter_ends_here(w, at + 2))
			return at;
		from = at + 1;
	}
	return SIZE_MAX;
}

/* Parses the header block at @pos; *data_start is where the part's data begins. */
static int read_part_headers(const struct walk *w, size_t pos, struct part_headers *h,
			     size_t *data_start)
{
	size_t end_limit =
	    w->len - pos < DT_MULTIPART_MAX_HEADERS ? w->len - pos : DT_MULTIPART_MAX_HEADERS;
	const char *block = w->body + pos;
	size_t line_start = 0;

	for (;;) {
		const char *eol = memmem(block + line_start, end_limit - line_start, "\r\n", 2);
		size_t line_len;
		int rc;

		if (!eol)
			return -EBADMSG; /* ends inside the headers, or they are too long */
		line_len = (size_t)(eol - (block + line_start));
		if (line_len == 0) {
			*data_start = pos + line_start + 2;
			return 0;
		}
		rc = take_header(h, block + line_start, line_len);
		if (rc)
			return rc;
		line_start += line_len + 2;
		if (line_start >= end_limit)
			return -EBADMSG;
	}
}

/* The end of the part whose data starts at @d: by Content-Length when it fits, else by search. */
static size_t part_end(const struct walk *w, size_t d, int64_t content_length)
{
	if (content_length >= 0 && (uint64_t)content_length <= w->len - d) {
		size_t end = d + (size_t)content_length;

		if (w->len - end >= 2 && memcmp(w->body + end, "\r\n", 2) == 0 &&
		    delimiter_ends_here(w, end + 2))
			return end;
	}
	return find_delimiter(w, d);
}

int dt_multipart_parse(const char *content_type, const char *body, size_t len, dt_multipart_fn fn,
		       void *arg)
{
	char boundary[DT_MULTIPART_MAX_BOUNDARY + 1];
	struct walk w = {body, len, "", 0};
	size_t pos;
	int rc;

	rc = dt_multipart_boundary(content_type, boundary, sizeof(boundary));
	if (rc)
		return rc;
	if (!body)
		return -EBADMSG;
	w.dlen = strlen(boundary) + 2;
	memcpy(w.delim, "--", 2);
	memcpy(w.delim + 2, boundary, w.dlen - 2);

	/* The first delimiter, after an optional preamble. */
	if (delimiter_ends_here(&w, 0)) {
		pos = 0;
	} else {
		pos = find_delimiter(&w, 0);
		if (pos == SIZE_MAX)
			return -EBADMSG;
		pos += 2;
	}

	for (;;) {
		struct part_headers h = {BUF_INIT, BUF_INIT, BUF_INIT, BUF_INIT, false, false, -1};
		struct dt_multipart_part part;
		size_t p = pos + w.dlen, data_start = 0, end;

		if (len - p >= 2 && body[p] == '-' && body[p + 1] == '-')
			return 0; /* the close delimiter */
		while (p < len && (body[p] == ' ' || body[p] == '\t'))
			p++;
		if (p == len)
			return -EBADMSG; /* cut after a delimiter: more parts may be missing */
		if (len - p < 2 || body[p] != '\r' || body[p + 1] != '\n')
			return -EBADMSG;
		p += 2;

		rc = read_part_headers(&w, p, &h, &data_start);
		if (rc) {
			part_headers_free(&h);
			return rc;
		}
		end = part_end(&w, data_start, h.content_length);
		part.name = buf_str(&h.name);
		part.filename = h.has_filename_star ? buf_str(&h.filename_star)
				: h.has_filename    ? buf_str(&h.filename)
						    : NULL;
		part.content_type = buf_str(&h.content_type);
		part.data = body + data_start;
		part.truncated = end == SIZE_MAX;
		part.len = part.truncated ? len - data_start : end - data_start;
		rc = fn(arg, &part);
		part_headers_free(&h);
		if (rc)
			return rc;
		if (end == SIZE_MAX)
			return -EBADMSG;
		pos = end + 2;
	}
}
