/*
 * The one place that turns what the backend answered (an HTTP status and a
 * body, or a transport failure) into an errno and a sentence for a user.
 * Bodies come from a remote peer: they are bounded, stripped of control
 * characters and never trusted to be JSON.
 */
#include "dt_internal.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

/* Bodies above this are not parsed as JSON for an error message. */
#define DT_MAX_ERROR_JSON (1u << 20)

static const struct {
	int status;
	const char *phrase;
} reason_phrases[] = {
	{400, "Bad Request"},
	{401, "Unauthorized"},
	{403, "Forbidden"},
	{404, "Not Found"},
	{405, "Method Not Allowed"},
	{408, "Request Timeout"},
	{409, "Conflict"},
	{410, "Gone"},
	{413, "Payload Too Large"},
	{415, "Unsupported Media Type"},
	{422, "Unprocessable Entity"},
	{429, "Too Many Requests"},
	{500, "Internal Server Error"},
	{501, "Not Implemented"},
	{502, "Bad Gateway"},
	{503, "Service Unavailable"},
	{504, "Gateway Timeout"},
};

const char *dt_reason_phrase(int status)
{
	for (size_t i = 0; i < ARRAY_SIZE(reason_phrases); i++)
		if (reason_phrases[i].status == status)
			return reason_phrases[i].phrase;
	return "HTTP error";
}

static int errno_for_status(int status)
{
	switch (status) {
	case 400:
	case 422:
		return EINVAL;
	case 401:
	case 403:
		return EACCES;
	case 404:
		return ENOENT;
	case 408:
		return ETIMEDOUT;
	case 409:
		return EEXIST;
	case 413:
		return EFBIG;
	case 429:
		return EAGAIN;
	default:
		return EIO; /* 410, other 4xx, every 5xx, and what is not an error status */
	}
}

/*
 * Copies at most @max bytes of @src into @out as one readable line: control
 * characters become spaces, runs of blanks collapse, the ends are trimmed.
 */
static void append_clean(struct buf *out, const char *src, size_t len, size_t max)
{
	size_t start = out->len, kept = 0;
	bool space = true; /* drops leading blanks */

	for (size_t i = 0; i < len && kept < max; i++) {
		unsigned char ch = (unsigned char)src[i];

		if (ch < 0x20 || ch == 0x7f || ch == ' ') {
			if (!space && buf_append(out, " ", 1) == 0)
				kept++;
			space = true;
			continue;
		}
		space = false;
		if (buf_append(out, &src[i], 1) == 0)
			kept++;
	}
	while (out->len > start && out->data[out->len - 1] == ' ')
		out->data[--out->len] = '\0';
	if (kept >= max && len > max)
		buf_append_str(out, "...");
}

/* "message" as a string, or an array of strings joined with ", ". */
static bool message_from_json(const cJSON *root, struct buf *out)
{
	const cJSON *msg = cJSON_GetObjectItemCaseSensitive(root, "message");
	const char *error;

	if (cJSON_IsString(msg) && msg->valuestring[0]) {
		append_clean(out, msg->valuestring, strlen(msg->valuestring), 400);
		return true;
	}
	if (cJSON_IsArray(msg)) {
		const cJSON *item;
		bool any = false;

		cJSON_ArrayForEach(item, msg) {
			if (!cJSON_IsString(item) || !item->valuestring[0])
				continue;
			if (any)
				buf_append_str(out, ", ");
			append_clean(out, item->valuestring, strlen(item->valuestring), 400);
			any = true;
			if (out->len > 400)
				break;
		}
		if (any)
			return true;
	}
	error = dt_json_string(root, "error");
	if (error && error[0]) {
		append_clean(out, error, strlen(error), 400);
		return true;
	}
	return false;
}

/* The <title> of an HTML error page, which says more than its markup. */
static bool message_from_html(const char *body, size_t len, struct buf *out)
{
	const char *open = memmem(body, len, "<title>", 7);
	const char *close;

	if (!open)
		open = memmem(body, len, "<TITLE>", 7);
	if (!open)
		return false;
	open += 7;
	close = memchr(open, '<', len - (size_t)(open - body));
	if (!close || close == open)
		return false;
	append_clean(out, open, (size_t)(close - open), DT_MAX_QUOTED_BODY);
	return out->len > 0;
}

static bool looks_like_html(const char *body, size_t len)
{
	while (len > 0 && isspace((unsigned char)*body)) {
		body++;
		len--;
	}
	return len > 0 && body[0] == '<';
}

void dt_error_from_http(struct dt_error *err, int http_status, const char *body, size_t len,
			const char *what)
{
	struct buf msg = BUF_INIT;
	bool found = false;

	if (!body)
		len = 0;
	if (len > 0 && len <= DT_MAX_ERROR_JSON) {
		cJSON *root = cJSON_ParseWithLength(body, len);

		if (cJSON_IsObject(root))
			found = message_from_json(root, &msg);
		cJSON_Delete(root);
	}
	if (!found && len > 0 && looks_like_html(body, len))
		found = message_from_html(body, len, &msg);
	else if (!found && len > 0) {
		append_clean(&msg, body, len, DT_MAX_QUOTED_BODY);
		found = msg.len > 0;
	}
	if (!found) {
		buf_reset(&msg);
		buf_printf(&msg, "%s (HTTP %d)", dt_reason_phrase(http_status), http_status);
	}
	dt_error_set(err, errno_for_status(http_status), http_status, what, "%s", buf_str(&msg));
	buf_free(&msg);
}

/* Cuts at the last whole UTF-8 character so a truncated message stays valid text. */
static void trim_partial_utf8(char *s)
{
	size_t n = strlen(s), i = n;

	while (i > 0 && ((unsigned char)s[i - 1] & 0xc0) == 0x80)
		i--;
	if (i > 0 && ((unsigned char)s[i - 1] & 0x80)) {
		unsigned char lead = (unsigned char)s[i - 1];
		size_t want = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;

		if (n - (i - 1) < want)
			s[i - 1] = '\0';
	}
}

int dt_error_set(struct dt_error *err, int e, int status, const char *what, const char *fmt, ...)
{
	char detail[sizeof(err->message)];
	size_t len = 0;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	err->err = e;
	err->http_status = status;
	err->transport = false;
	err->message[0] = '\0';
	if (what && what[0]) {
		copy_str(err->message, sizeof(err->message), what);
		len = strlen(err->message);
		copy_str(err->message + len, sizeof(err->message) - len, ": ");
		len = strlen(err->message);
	}
	copy_str(err->message + len, sizeof(err->message) - len, detail);
	trim_partial_utf8(err->message);
	return -e;
}

static int transport_error(struct dt_error *err, CURLcode code, const char *detail,
			   const char *url, long timeout_ms, bool too_large, const char *what)
{
	switch (code) {
	case CURLE_ABORTED_BY_CALLBACK:
		return dt_error_set(err, EINTR, 0, what, "interrupted");
	case CURLE_OPERATION_TIMEDOUT:
		return dt_error_set(err, ETIMEDOUT, 0, what, "no answer from %s within %ld ms", url,
				    timeout_ms);
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return dt_error_set(err, EIO, 0, what, "cannot reach %s: %s", url, detail);
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_ENGINE_NOTFOUND:
	case CURLE_SSL_ENGINE_SETFAILED:
	case CURLE_SSL_ENGINE_INITFAILED:
	case CURLE_SSL_CRL_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_SSL_INVALIDCERTSTATUS:
	case CURLE_SSL_CLIENTCERT:
		return dt_error_set(err, EIO, 0, what, "TLS with %s failed: %s", url, detail);
	case CURLE_OUT_OF_MEMORY:
		return dt_error_set(err, ENOMEM, 0, what, "out of memory");
	case CURLE_WRITE_ERROR:
	case CURLE_FILESIZE_EXCEEDED:
		if (too_large || code == CURLE_FILESIZE_EXCEEDED)
			return dt_error_set(err, EIO, 0, what, "answer from %s larger than %u MiB",
					    url, DT_MAX_RESPONSE >> 20);
		return dt_error_set(err, EIO, 0, what, "%s: %s", url, detail);
	default:
		return dt_error_set(err, EIO, 0, what, "connection to %s failed: %s", url, detail);
	}
}

int dt_error_from_curl(struct dt_error *err, CURLcode code, const char *curl_message,
		       const char *url, long timeout_ms, bool too_large, const char *what)
{
	const char *detail = curl_message && curl_message[0] ? curl_message
							     : curl_easy_strerror(code);
	int rc = transport_error(err, code, detail, url, timeout_ms, too_large, what);

	/* Interruptions, memory and oversized answers say nothing about reachability. */
	err->transport = !(code == CURLE_ABORTED_BY_CALLBACK || code == CURLE_OUT_OF_MEMORY ||
			   too_large || code == CURLE_FILESIZE_EXCEEDED);
	return rc;
}
