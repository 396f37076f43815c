/*
 * What the modules of the client library share among themselves (and with
 * the unit tests): the request engine of client.c, the error helpers of
 * error.c, the DTO parsers of dto.c and the state waits. Not for the FUSE
 * side: it codes against daytona.h only.
 */
#ifndef QUAVER_DT_INTERNAL_H
#define QUAVER_DT_INTERNAL_H

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "buf.h"
#include "daytona.h"

/* Hostile-input bounds: a bigger answer is refused with EIO. */
#define DT_MAX_RESPONSE (64u << 20)
#define DT_MAX_ITEMS 100000
/* Longest raw body quoted in an error message. */
#define DT_MAX_QUOTED_BODY 200

#define DT_SDK_VERSION "0.218.0"
#define DT_SOURCE "quaverfs"

/* Defaults for the zero values of struct dt_config. */
#define DT_DEFAULT_CONNECT_TIMEOUT_MS 5000
#define DT_DEFAULT_REQUEST_TIMEOUT_MS 30000
#define DT_DEFAULT_WAIT_TIMEOUT_MS 120000
#define DT_DEFAULT_MAX_RETRIES 2
/* File transfers: no overall deadline, but under this rate for the stall time fails. */
#define DT_DEFAULT_TRANSFER_STALL_MS 30000
#define DT_TRANSFER_MIN_RATE 1024 /* bytes per second */

/* Poll cadence of the state waits: 100 ms, x1.5 per poll, at most 1 s. */
#define DT_POLL_FIRST_MS 100
#define DT_POLL_MAX_MS 1000

/* Public entry points accept err == NULL: errors then go to a scratch struct. */
#define DT_ERR_GUARD(err)                                                                          \
	struct dt_error err##_scratch_;                                                            \
	if (!(err))                                                                                \
	(err) = &err##_scratch_

enum dt_method { DT_GET, DT_POST, DT_PUT, DT_DELETE };

struct dt_response {
	long status;     /* 0 when no HTTP answer came */
	struct buf body; /* the answer body, at most DT_MAX_RESPONSE */
};

/*
 * One HTTP exchange with the API: @path is relative to api_url and already
 * percent-encoded (build it with dt_path_*), @body is JSON or NULL.
 * Retries 429/502/503/504 for GET/PUT/DELETE, and 429 and connect failures
 * for any method, with backoff, inside one overall deadline. Returns 0 for a 2xx
 * answer; otherwise -errno with @err filled ("@what: reason"). @resp (may
 * be NULL) keeps the status and body either way; free it with
 * dt_response_free.
 */
int dt_call(struct dt_client *c, enum dt_method method, const char *path, const char *body,
	    const char *what, struct dt_response *resp, struct dt_error *err);
void dt_response_free(struct dt_response *resp);

/*
 * The general form of dt_call, for the toolbox: any URL, extra header lines,
 * a body streamed from a callback or a multipart form, the answer streamed
 * to a callback. Zero-initialise it and set what applies.
 */
struct dt_transfer {
	enum dt_method method;
	const char *url;  /* absolute, already encoded; NULL: api_url + path */
	const char *path; /* used when url is NULL */
	const char *what; /* for messages: "download /a/b" */
	const char *const *headers; /* NULL-terminated extra lines ("Range: bytes=0-9") */

	/* The request body: at most one of body, read_fn and mime. */
	const char *body;
	size_t body_len;
	const char *content_type; /* of body or read_fn; NULL: application/json */
	curl_read_callback read_fn; /* streams read_size bytes */
	curl_seek_callback seek_fn; /* rewinds read_fn (curl resends on a fresh connection) */
	void *io_arg;               /* READDATA and SEEKDATA */
	int64_t read_size;
	curl_mime *mime;
	bool expect_continue; /* "Expect: 100-continue": a server may refuse before the body */

	/*
	 * Large transfers: no overall deadline; the connect timeout, and a
	 * stall (under DT_TRANSFER_MIN_RATE for the client's stall time) is
	 * ETIMEDOUT. Cancellation works as for any request.
	 */
	bool streaming;

	/*
	 * The body of a 2xx answer goes to data_fn (any size) instead of the
	 * response buffer; error bodies still go to the buffer for the message.
	 * data_fn returns @len to go on; to end the transfer early as a success
	 * it sets t->stopped and returns 0; to fail it sets t->sink_errno (and
	 * optionally t->sink_message) and returns 0. A reader fails the same
	 * way with sink_errno and CURL_READFUNC_ABORT.
	 */
	size_t (*data_fn)(struct dt_transfer *t, const char *data, size_t len);
	void *data_arg;
	/* Before a retry of a transfer with read_fn, data_fn or mime: false forbids it. */
	bool (*restart_fn)(struct dt_transfer *t);

	/* Filled by the engine, per attempt. */
	int64_t delivered; /* bytes given to data_fn */
	bool stopped;
	int sink_errno;
	char sink_message[200];
	long answer_status;            /* known when data_fn first runs */
	int64_t answer_content_length; /* -1: not sent */
	char answer_content_range[128];
	char answer_content_type[256];
};
int dt_transfer_run(struct dt_client *c, struct dt_transfer *t, struct dt_response *resp,
		    struct dt_error *err);

/*
 * dt_call plus JSON parsing of the answer. *out is NULL for an empty body.
 * A body that is not JSON fails with EIO.
 */
int dt_call_json(struct dt_client *c, enum dt_method method, const char *path, const char *body,
		 const char *what, cJSON **out, struct dt_error *err);

/*
 * dt_call_json for answers that name objects (gets and listings): a \u0000
 * escape in a string becomes \u001a first, so a name that hid a NUL keeps
 * its length (cJSON would cut it at the NUL, into another object's name) and
 * shows a control character, which callers refuse as a name.
 */
int dt_call_json_names(struct dt_client *c, enum dt_method method, const char *path,
		       const char *what, cJSON **out, struct dt_error *err);

/* Parses a JSON answer (bounded); EIO with @err filled when it is not JSON. */
int dt_parse_json(const char *text, size_t len, const char *what, cJSON **out,
		  struct dt_error *err);

/* Appends "/" and the percent-encoded @segment; "", "." and ".." are EINVAL. */
int dt_path_segment(struct buf *b, const char *segment);
/* Appends "?key=value" or "&key=value", the value percent-encoded. */
int dt_path_query(struct buf *b, const char *key, const char *value);
/* Builds a path from segments: dt_path(&b, "sandbox", id, "start", NULL). */
int dt_path(struct buf *b, ...) __attribute__((sentinel));

/* Cancellation of the calling thread (dt_set_cancel_hook). */
bool dt_cancelled(void);
/* Sleeps @ms in slices of at most 100 ms; -EINTR once cancelled. */
int dt_sleep_ms(long ms);

long dt_wait_timeout_ms(const struct dt_client *c);
/*
 * For the websocket client (dt_ws.c), which sends what every request sends:
 * the common header lines (the first is Authorization: never log them), the
 * CA file (NULL: the system store) and the connect timeout.
 */
const struct curl_slist *dt_client_headers(const struct dt_client *c);
const char *dt_client_ca_file(const struct dt_client *c);
long dt_client_connect_timeout_ms(const struct dt_client *c);
const char *dt_client_target(const struct dt_client *c);

/* Fills @err with errno @e, status @status and "@what: <fmt>". Returns -e. */
int dt_error_set(struct dt_error *err, int e, int status, const char *what, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
/* Maps a libcurl failure to errno and message; @url is shown without the query. */
int dt_error_from_curl(struct dt_error *err, CURLcode code, const char *curl_message,
		       const char *url, long timeout_ms, bool too_large, const char *what);
/* The reason phrase of an HTTP status ("Not Found"), or "HTTP error". */
const char *dt_reason_phrase(int status);

/* DTO parsers: tolerant of missing, null, wrong-typed and unknown fields. */
int dt_sandbox_from_json(const cJSON *o, struct dt_sandbox *out);
int dt_volume_from_json(const cJSON *o, struct dt_volume *out);
int dt_snapshot_from_json(const cJSON *o, struct dt_snapshot *out);
/* Pretty-printed copy with secret-looking fields replaced by "***". */
char *dt_json_redacted(const cJSON *o);
/* True for keys that name a secret (token, secret, password, api key, authorization). */
bool dt_key_is_secret(const char *key);
/* The string member @name, or NULL when absent, null or not a string. */
const char *dt_json_string(const cJSON *o, const char *name);
/* A {"k":"v"} object from @kv, NULL on ENOMEM. */
cJSON *dt_kv_to_json(const struct dt_kv *kv, size_t n);

/* Only http(s), no credentials, query or fragment, one line. 0 or -EINVAL with @err. */
int dt_check_url(const char *url, const char *what, struct dt_error *err);

/* ---- the toolbox (toolbox.c, fileinfo.c, transfer.c) ---- */

/*
 * "{base}{endpoint}" for the toolbox of @tb (endpoint "/files/info"), then
 * the query pairs of @query (NULL-terminated key, value, ...; a NULL value
 * ends the list too), percent-encoded. 0 or -errno with @err.
 */
int dt_toolbox_url(struct dt_toolbox *tb, struct buf *url, const char *endpoint,
		   const char *const *query, const char *what, struct dt_error *err);
struct dt_client *dt_toolbox_client(struct dt_toolbox *tb);
/* dt_transfer_run for the toolbox: a 409 "not started" is EHOSTDOWN, not EEXIST. */
int dt_toolbox_run(struct dt_toolbox *tb, struct dt_transfer *t, struct dt_response *resp,
		   struct dt_error *err);
/*
 * One toolbox request (dt_toolbox_url, then dt_toolbox_run) whose answer is
 * small (JSON or empty) and kept in @resp; @query and @body may be NULL.
 */
int dt_toolbox_request(struct dt_toolbox *tb, enum dt_method method, const char *endpoint,
		       const char *const *query, const char *body, const char *what,
		       struct dt_response *resp, struct dt_error *err);
/* Which upload the daemon has: 0 not known yet, 1 upload-v2, -1 only bulk-upload. */
int dt_toolbox_upload_mode(struct dt_toolbox *tb);
void dt_toolbox_set_upload_mode(struct dt_toolbox *tb, int mode);

/* RFC 3339 with optional fraction (ns); Go's time.String(). 0 or -EINVAL. */
int dt_parse_rfc3339(const char *s, struct timespec *out);
int dt_parse_go_time(const char *s, struct timespec *out);
/*
 * st_mode from FileInfo's "mode" (Go FileMode.String(), or octal) and
 * "permissions" (%04o); *is_dir is the isDir field, set when the mode says
 * so. Without any usable bits: 0755 for directories, 0644 otherwise.
 */
mode_t dt_file_mode(const char *mode, const char *permissions, bool *is_dir);
/*
 * One FileInfo object; -EINVAL for a missing or empty name (or, when
 * @nul_seen, one that hid a NUL), -ENOMEM.
 */
int dt_file_info_from_json(const cJSON *o, bool nul_seen, struct dt_file_info *out);
/* A listing / one FileInfo answer; @text is rewritten in place (NUL escapes). */
int dt_file_list_parse(char *text, size_t len, const char *what, struct dt_file_list *out,
		       struct dt_error *err);
int dt_file_info_parse(char *text, size_t len, const char *what, struct dt_file_info *out,
		       struct dt_error *err);

/* What a sandbox wait waits for. */
struct dt_wait {
	const char *const *targets; /* NULL-terminated states that end the wait, or NULL */
	const char *leave_state;    /* or: the wait ends once the state is no longer this */
	bool ignore_error_state;    /* "error" is not final (a delete of a broken sandbox) */
	long timeout_ms;            /* <= 0: the client's wait timeout */
	const char *what;           /* for messages: "stop sandbox demo" */
};
/*
 * Polls GET /sandbox/{id} (100 ms, x1.5, at most 1 s). A 404 ends a wait
 * that accepts "destroyed" (out->state is then "destroyed") and is ENOENT
 * otherwise; "error"/"build_failed" fail with EIO and errorReason.
 */
int dt_sandbox_wait_for(struct dt_client *c, const char *id, const struct dt_wait *w,
			struct dt_sandbox *out, struct dt_error *err);
/* Snapshot wait; @missing_ok keeps polling through 404 (a snapshot not yet recorded). */
int dt_snapshot_wait_for(struct dt_client *c, const char *id_or_name, long timeout_ms,
			 bool missing_ok, const char *what, struct dt_snapshot *out,
			 struct dt_error *err);

/* A poll interval after @delay: x1.5, capped at DT_POLL_MAX_MS. */
static inline long dt_next_poll_ms(long delay)
{
	delay = delay + delay / 2;
	return delay > DT_POLL_MAX_MS ? DT_POLL_MAX_MS : delay;
}

#endif
