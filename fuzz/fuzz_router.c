/*
 * libFuzzer target: quaverd's request router and handlers (api*.c,
 * toolbox*.c) behind the HTTP layer, on a real store in a temp state dir.
 * libwebsockets parses the request line; what reaches the router is a
 * method, a decoded path, decoded query parameters, headers and a body,
 * and that is what the input gives:
 *   byte 0: bits 0-2 the method, bit 3 set: no token
 *   then lines: the path; "name=value" query parameters; "Header: value"
 *   lines; an empty line; the body.
 * "@ID" in the path is replaced with the id of a sandbox created at start,
 * so the toolbox's routes are reached. Toolbox requests are read-only here
 * (GET, HEAD): a fuzzer must never write outside its state dir, even
 * through a traversal bug; the escape suites test the writes.
 * Chunked request bodies (http_chunked_feed) are fed from the body too.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "api.h"
#include "buf.h"
#include "http.h"
#include "http_internal.h"
#include "log.h"
#include "store.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define TOKEN "fuzz-token"

static const char *const methods[] = {"GET",   "POST", "PUT",	  "DELETE",
				      "PATCH", "HEAD", "OPTIONS", "GET"};
/* Under $TMPDIR (tools/test gives each run its own and removes it: a crash skips atexit). */
static char state_dir[4096];
static struct store *store;
static struct api *api;
static char sandbox_id[64];

static void cleanup(void)
{
	if (api)
		api_free(api);
	if (store)
		store_close(store);
	rm_rf(state_dir);
}

static void handle(struct http_request *req, struct http_response *resp)
{
	struct http_body_policy policy;

	memset(&policy, 0, sizeof(policy));
	api_http_ops()->body_policy(api, req->method, req->path, &policy);
	http_response_init(resp);
	api_http_ops()->handle(api, req, resp);
}

static void setup(void)
{
	struct store_config cfg = {.state_dir = state_dir,
				   .organization_id = "fuzz-org",
				   .clock_scale = 1,
				   .transition_delay_ms = 0};
	struct api_config acfg = {.token = TOKEN, .max_json_body = 1 << 20};
	struct http_request req;
	struct http_response resp;
	int err = 0;
	cJSON *json;

	snprintf(state_dir, sizeof(state_dir), "%s/quaver-fuzz-router-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(state_dir))
		abort();
	atexit(cleanup);
	log_set_level(LOG_LVL_ERROR);
	store = store_open(&cfg, &err);
	if (!store)
		abort();
	api = api_new(store, &acfg);
	api_set_public_base(api, "http://127.0.0.1:9");

	memset(&req, 0, sizeof(req));
	copy_str(req.method, sizeof(req.method), "POST");
	req.path = strdup("/api/sandbox");
	req.raw_query = strdup("");
	http_request_add_header(&req, "authorization", 13, strdup("Bearer " TOKEN));
	buf_append_str(&req.body, "{\"name\":\"fz\"}");
	req.body_len = req.body.len;
	handle(&req, &resp);
	json = cJSON_ParseWithLength(resp.body.data ? resp.body.data : "", resp.body.len);
	if (cJSON_IsString(cJSON_GetObjectItemCaseSensitive(json, "id")))
		copy_str(sandbox_id, sizeof(sandbox_id),
			 cJSON_GetObjectItemCaseSensitive(json, "id")->valuestring);
	cJSON_Delete(json);
	http_response_clear(&resp);
	http_request_clear(&req);
}

static int count_piece(void *arg, const void *piece, size_t len)
{
	(void)piece;
	*(size_t *)arg += len;
	return 0;
}

/* A copy of @line (@len bytes) with "@ID" replaced by the sandbox's id. */
static char *expand(const char *line, size_t len)
{
	struct buf b = BUF_INIT;

	for (size_t i = 0; i < len; i++) {
		if (len - i >= 3 && !memcmp(line + i, "@ID", 3)) {
			buf_append_str(&b, sandbox_id);
			i += 2;
		} else {
			buf_append(&b, line + i, 1);
		}
	}
	buf_append(&b, "", 0);
	if (!b.data)
		return strdup("");
	return buf_steal(&b);
}

/* A POST to /api/{collection}: a new sandbox, volume or snapshot. */
static bool creates_object(const struct http_request *req)
{
	size_t segs = 0;
	bool in_seg = false;

	if (strcmp(req->method, "POST"))
		return false;
	for (const char *p = req->path; *p; p++) {
		if (*p != '/' && !in_seg)
			segs++;
		in_seg = *p != '/';
	}
	return segs == 2 && !strncmp(req->path, "/api", 4);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static unsigned creations;
	const char *text = (const char *)data + 1, *end, *line, *nl;
	struct http_request req;
	struct http_response resp;
	bool with_token;
	size_t left;

	if (!store)
		setup();
	if (size < 1)
		return 0;
	end = (const char *)data + size;
	memset(&req, 0, sizeof(req));
	copy_str(req.method, sizeof(req.method), methods[data[0] & 7]);
	with_token = !(data[0] & 8);

	/* The path: up to the first newline, without NULs (the HTTP layer refuses them). */
	line = text;
	nl = memchr(line, '\n', (size_t)(end - line));
	req.path = expand(line, nl ? (size_t)(nl - line) : (size_t)(end - line));
	req.raw_query = strdup("");
	if (!req.path || !req.raw_query || memchr(line, '\0', nl ? (size_t)(nl - line) : 0))
		goto out;
	if (strncmp(req.path, "/api", 4) && strcmp(req.method, "GET") && strcmp(req.method, "HEAD"))
		goto out; /* toolbox writes: see the top of the file */
	if (creates_object(&req) && ++creations > 32)
		goto out; /* each creation builds a tree: a few keep the fuzzer fast */
	line = nl ? nl + 1 : end;
	while (line < end) {
		const char *eq, *colon;
		size_t n;

		nl = memchr(line, '\n', (size_t)(end - line));
		n = nl ? (size_t)(nl - line) : (size_t)(end - line);
		if (n == 0) {
			line++;
			break;
		}
		colon = memchr(line, ':', n);
		eq = memchr(line, '=', n);
		if (colon && (!eq || colon < eq)) {
			const char *v = colon + 1;

			while (v < line + n && *v == ' ')
				v++;
			http_request_add_header(&req, line, (size_t)(colon - line),
						strndup(v, (size_t)(line + n - v)));
		} else if (req.nparams < 32) {
			struct http_param *p =
			    realloc(req.params, (req.nparams + 1) * sizeof(*req.params));

			if (!p)
				goto out;
			req.params = p;
			p[req.nparams].name =
			    eq ? strndup(line, (size_t)(eq - line)) : strndup(line, n);
			p[req.nparams].value =
			    eq ? strndup(eq + 1, (size_t)(line + n - eq - 1)) : strdup("");
			req.nparams++;
		}
		line = nl ? nl + 1 : end;
	}
	if (with_token)
		http_request_add_header(&req, "authorization", 13, strdup("Bearer " TOKEN));
	left = (size_t)(end - line);
	if (left)
		buf_append(&req.body, line, left);
	req.body_len = left;

	{
		struct http_chunked chunked;
		size_t payload = 0;

		memset(&chunked, 0, sizeof(chunked));
		if (http_chunked_feed(&chunked, line, left, count_piece, &payload) >
			(ssize_t)left ||
		    payload > left)
			abort();
	}
	{
		struct buf logged = BUF_INIT;

		http_query_for_log(&req, &logged);
		buf_free(&logged);
	}
	handle(&req, &resp);
	http_response_clear(&resp);
out:
	http_request_clear(&req);
	return 0;
}
