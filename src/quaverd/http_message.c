/*
 * quaverd's HTTP layer: requests and responses as plain data (http.h), with
 * nothing of libwebsockets in here; server.c does the connections.
 */
#include "http.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http_internal.h"
#include "util.h"

const char *http_param(const struct http_request *req, const char *name)
{
	for (size_t i = 0; i < req->nparams; i++)
		if (strcmp(req->params[i].name, name) == 0)
			return req->params[i].value;
	return NULL;
}

size_t http_param_all(const struct http_request *req, const char *name, const char **out,
		      size_t max)
{
	size_t n = 0;

	for (size_t i = 0; i < req->nparams && n < max; i++)
		if (strcmp(req->params[i].name, name) == 0)
			out[n++] = req->params[i].value;
	return n;
}

const char *http_header(const struct http_request *req, const char *name)
{
	for (size_t i = 0; i < req->nheaders; i++)
		if (strcasecmp(req->headers[i].name, name) == 0)
			return req->headers[i].value;
	return NULL;
}

static const struct {
	int status;
	const char *reason;
} reasons[] = {
    {100, "Continue"},
    {101, "Switching Protocols"},
    {200, "OK"},
    {201, "Created"},
    {202, "Accepted"},
    {204, "No Content"},
    {206, "Partial Content"},
    {301, "Moved Permanently"},
    {302, "Found"},
    {304, "Not Modified"},
    {307, "Temporary Redirect"},
    {308, "Permanent Redirect"},
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {406, "Not Acceptable"},
    {408, "Request Timeout"},
    {409, "Conflict"},
    {410, "Gone"},
    {411, "Length Required"},
    {412, "Precondition Failed"},
    {413, "Payload Too Large"},
    {414, "URI Too Long"},
    {415, "Unsupported Media Type"},
    {416, "Range Not Satisfiable"},
    {422, "Unprocessable Entity"},
    {423, "Locked"},
    {429, "Too Many Requests"},
    {431, "Request Header Fields Too Large"},
    {500, "Internal Server Error"},
    {501, "Not Implemented"},
    {502, "Bad Gateway"},
    {503, "Service Unavailable"},
    {504, "Gateway Timeout"},
    {507, "Insufficient Storage"},
};

const char *http_reason(int status)
{
	for (size_t i = 0; i < ARRAY_SIZE(reasons); i++)
		if (reasons[i].status == status)
			return reasons[i].reason;
	if (status >= 200 && status < 300)
		return "Success";
	if (status >= 400 && status < 500)
		return "Client Error";
	return "Server Error";
}

void http_reply_json(struct http_response *resp, int status, cJSON *json)
{
	char *text = json ? cJSON_PrintUnformatted(json) : NULL;

	resp->status = status;
	copy_str(resp->content_type, sizeof(resp->content_type), "application/json");
	buf_reset(&resp->body);
	if (text) {
		if (buf_append_str(&resp->body, text) < 0)
			resp->status = 0; /* out of memory: the layer answers 500 */
		cJSON_free(text);
	} else if (json) {
		resp->status = 0;
	}
	cJSON_Delete(json);
}

/* Length of the valid UTF-8 sequence at @s (RFC 3629), or 0. */
static size_t utf8_sequence(const unsigned char *s)
{
	size_t len;
	uint32_t cp;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		len = 2;
		cp = s[0] & 0x1f;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		len = 3;
		cp = s[0] & 0x0f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		len = 4;
		cp = s[0] & 0x07;
	} else {
		return 0;
	}
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0; /* also stops at the terminating NUL */
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

/*
 * Error messages and paths repeat what a client sent, which may be any
 * bytes; JSON must be UTF-8, so each invalid byte becomes U+FFFD.
 */
static void utf8_clean(struct buf *out, const char *text)
{
	const unsigned char *s = (const unsigned char *)text;

	while (*s) {
		size_t len = utf8_sequence(s);

		if (len) {
			buf_append(out, s, len);
			s += len;
		} else {
			buf_append_str(out, "\xef\xbf\xbd");
			s++;
		}
	}
}

void http_reply_error_v(struct http_response *resp, const char *path, int status, const char *fmt,
			va_list ap)
{
	struct buf raw = BUF_INIT, msg = BUF_INIT, clean_path = BUF_INIT;
	char stamp[32];
	cJSON *body;

	if (buf_vprintf(&raw, fmt, ap) < 0)
		buf_reset(&raw);
	utf8_clean(&msg, buf_str(&raw));
	utf8_clean(&clean_path, path ? path : "");
	iso8601_ms(now_wall_ms(), stamp);
	body = cJSON_CreateObject();
	if (body) {
		cJSON_AddNumberToObject(body, "statusCode", status);
		cJSON_AddStringToObject(body, "error", http_reason(status));
		cJSON_AddStringToObject(body, "message", buf_str(&msg));
		cJSON_AddStringToObject(body, "path", buf_str(&clean_path));
		cJSON_AddStringToObject(body, "timestamp", stamp);
	}
	buf_free(&raw);
	buf_free(&msg);
	buf_free(&clean_path);
	http_reply_json(resp, status, body);
	if (!body) {
		/* Still say what happened, in the same shape. */
		resp->status = status;
		buf_printf(&resp->body, "{\"statusCode\":%d,\"error\":\"%s\",\"message\":\"\"}",
			   status, http_reason(status));
	}
}

void http_reply_error(struct http_response *resp, const struct http_request *req, int status,
		      const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	http_reply_error_v(resp, req ? req->path : "", status, fmt, ap);
	va_end(ap);
}

int http_add_header(struct http_response *resp, const char *name, const char *value)
{
	struct http_header *h;

	if (resp->nextra >= ARRAY_SIZE(resp->extra))
		return -ENOSPC;
	h = &resp->extra[resp->nextra];
	h->name = strdup(name);
	h->value = strdup(value);
	if (!h->name || !h->value) {
		free(h->name);
		free(h->value);
		h->name = h->value = NULL;
		return -ENOMEM;
	}
	resp->nextra++;
	return 0;
}

void http_response_init(struct http_response *resp)
{
	memset(resp, 0, sizeof(*resp));
	copy_str(resp->content_type, sizeof(resp->content_type), "application/json");
	resp->file_fd = -1;
}

void http_response_clear(struct http_response *resp)
{
	buf_free(&resp->body);
	if (resp->file_fd >= 0)
		close(resp->file_fd);
	resp->file_fd = -1;
	for (size_t i = 0; i < resp->nextra; i++) {
		free(resp->extra[i].name);
		free(resp->extra[i].value);
	}
	resp->nextra = 0;
}

void http_request_clear(struct http_request *req)
{
	free(req->path);
	free(req->raw_query);
	for (size_t i = 0; i < req->nparams; i++) {
		free(req->params[i].name);
		free(req->params[i].value);
	}
	free(req->params);
	for (size_t i = 0; i < req->nheaders; i++) {
		free(req->headers[i].name);
		free(req->headers[i].value);
	}
	free(req->headers);
	buf_free(&req->body);
	if (req->body_file) {
		unlink(req->body_file);
		free(req->body_file);
	}
	memset(req, 0, sizeof(*req));
}

int http_request_add_header(struct http_request *req, const char *name, size_t name_len,
			    char *value)
{
	struct http_header *grown, *h;

	grown = realloc(req->headers, (req->nheaders + 1) * sizeof(*req->headers));
	if (!grown)
		return -ENOMEM;
	req->headers = grown;
	h = &req->headers[req->nheaders];
	h->name = strndup(name, name_len);
	if (!h->name)
		return -ENOMEM;
	for (char *p = h->name; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	h->value = value;
	req->nheaders++;
	return 0;
}

/* Percent-encodes @s into @out the way a query string carries it. */
int http_query_encode(struct buf *out, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";

	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		char esc[3] = {'%', hex[c >> 4], hex[c & 15]};

		if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
			if (buf_append(out, s, 1) < 0)
				return -ENOMEM;
		} else if (buf_append(out, esc, 3) < 0) {
			return -ENOMEM;
		}
	}
	return 0;
}

/* A query parameter whose value must not reach the log. */
static bool param_is_secret(const char *name)
{
	return strcasecmp(name, "DAYTONA_SANDBOX_AUTH_KEY") == 0 || strcasestr(name, "token");
}

/* The query for the request log line, secrets replaced by "***". */
void http_query_for_log(const struct http_request *req, struct buf *out)
{
	for (size_t i = 0; i < req->nparams; i++) {
		const struct http_param *p = &req->params[i];

		buf_append_str(out, i ? "&" : "?");
		http_query_encode(out, p->name);
		buf_append_str(out, "=");
		if (param_is_secret(p->name))
			buf_append_str(out, "***");
		else
			http_query_encode(out, p->value);
		if (out->len > 512) {
			buf_append_str(out, "...");
			break;
		}
	}
}

/* ---- chunked transfer coding (RFC 9112 section 7.1) ---- */

enum {
	CHUNK_SIZE = 0, /* hex digits of a chunk size */
	CHUNK_EXT,	/* ";name=value" after the size, up to CR */
	CHUNK_SIZE_LF,	/* the LF after the size line */
	CHUNK_DATA,	/* @left bytes of payload */
	CHUNK_DATA_CR,	/* CRLF after the payload */
	CHUNK_DATA_LF,
	CHUNK_TRAILER,	    /* start of a trailer line, or the final CRLF */
	CHUNK_TRAILER_TEXT, /* inside a trailer line, up to LF */
	CHUNK_END_LF,	    /* the LF of the final CRLF */
};

static int hex_value(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

ssize_t http_chunked_feed(struct http_chunked *d, const char *in, size_t len,
			  int (*out)(void *arg, const void *data, size_t len), void *arg)
{
	size_t i = 0;

	while (i < len && !d->done) {
		unsigned char c = (unsigned char)in[i];

		switch (d->state) {
		case CHUNK_SIZE:
			if (hex_value(c) >= 0) {
				if (++d->digits > 15)
					return -EINVAL; /* no chunk is 2^60 bytes */
				d->left = d->left * 16 + (uint64_t)hex_value(c);
			} else if (d->digits && (c == ';' || c == ' ' || c == '\t')) {
				d->state = CHUNK_EXT;
			} else if (d->digits && c == '\r') {
				d->state = CHUNK_SIZE_LF;
			} else {
				return -EINVAL;
			}
			i++;
			break;
		case CHUNK_EXT:
			if (c == '\r')
				d->state = CHUNK_SIZE_LF;
			else if (c == '\n' || c == 0)
				return -EINVAL;
			i++;
			break;
		case CHUNK_SIZE_LF:
			if (c != '\n')
				return -EINVAL;
			i++;
			d->digits = 0;
			d->state = d->left ? CHUNK_DATA : CHUNK_TRAILER;
			break;
		case CHUNK_DATA: {
			size_t n = len - i < d->left ? len - i : (size_t)d->left;
			int rc = out(arg, in + i, n);

			if (rc < 0)
				return rc;
			i += n;
			d->left -= n;
			if (!d->left)
				d->state = CHUNK_DATA_CR;
			break;
		}
		case CHUNK_DATA_CR:
			if (c != '\r')
				return -EINVAL;
			d->state = CHUNK_DATA_LF;
			i++;
			break;
		case CHUNK_DATA_LF:
			if (c != '\n')
				return -EINVAL;
			d->state = CHUNK_SIZE;
			i++;
			break;
		case CHUNK_TRAILER:
			d->state = c == '\r' ? CHUNK_END_LF : CHUNK_TRAILER_TEXT;
			if (c == '\n' || c == 0)
				return -EINVAL;
			i++;
			break;
		case CHUNK_TRAILER_TEXT:
			if (c == '\n')
				d->state = CHUNK_TRAILER; /* trailer fields are ignored */
			else if (c == 0)
				return -EINVAL;
			i++;
			break;
		case CHUNK_END_LF:
			if (c != '\n')
				return -EINVAL;
			d->done = true;
			i++;
			break;
		default:
			return -EINVAL;
		}
	}
	return (ssize_t)i;
}
