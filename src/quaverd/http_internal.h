/* What server.c and http_message.c share; not for handlers. */
#ifndef QUAVERD_HTTP_INTERNAL_H
#define QUAVERD_HTTP_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "http.h"

/* An empty response: no status yet, JSON, no file. */
void http_response_init(struct http_response *resp);
/* Frees what the response holds (body, file, extra headers); it can be initialised again. */
void http_response_clear(struct http_response *resp);
/* Frees everything the request holds and removes its spooled body file. */
void http_request_clear(struct http_request *req);
/* Appends a header; the name is copied (and lower-cased), @value is taken. 0 or -ENOMEM. */
int http_request_add_header(struct http_request *req, const char *name, size_t name_len,
			    char *value);
/* http_reply_error for a path rather than a request. */
void http_reply_error_v(struct http_response *resp, const char *path, int status, const char *fmt,
			va_list ap) __attribute__((format(printf, 4, 0)));
/* Percent-encodes @s the way a query string carries it. 0 or -ENOMEM. */
int http_query_encode(struct buf *out, const char *s);
/* "?a=1&b=2" for the request log, values of secret-looking parameters as "***". */
void http_query_for_log(const struct http_request *req, struct buf *out);

/* Decoding state of a request body sent with "Transfer-Encoding: chunked". */
struct http_chunked {
	int state;
	unsigned digits;
	uint64_t left;
	bool done; /* the last chunk and the trailer section are in */
};

/*
 * Feeds @len bytes of chunked coding and hands each piece of payload to
 * @out. Returns the bytes used (fewer than @len once the body has ended),
 * -EINVAL for malformed framing, or what @out returned when negative.
 */
ssize_t http_chunked_feed(struct http_chunked *d, const char *in, size_t len,
			  int (*out)(void *arg, const void *data, size_t len), void *arg);

#endif
