/*
 * dt_error_from_http and the transport mapping: what errno and sentence a
 * user gets for each status and each shape of error body Daytona (or a
 * proxy in front of it) may send.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dt_internal.h"

static int failures;

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			failures++;                                                                \
			fprintf(stderr, "%s:%d: FAILED %s: ", __FILE__, __LINE__, #cond);          \
			fprintf(stderr, __VA_ARGS__);                                              \
			fputc('\n', stderr);                                                       \
		}                                                                                  \
	} while (0)

static void map(struct dt_error *e, int status, const char *body, const char *what)
{
	memset(e, 0x55, sizeof(*e));
	dt_error_from_http(e, status, body, body ? strlen(body) : 0, what);
}

static void test_status_to_errno(void)
{
	static const struct {
		int status;
		int err;
	} cases[] = {
		{400, EINVAL}, {401, EACCES},	 {403, EACCES}, {404, ENOENT}, {408, ETIMEDOUT},
		{409, EEXIST}, {410, EIO},	 {413, EFBIG},	{422, EINVAL}, {429, EAGAIN},
		{500, EIO},    {502, EIO},	 {503, EIO},	{504, EIO},    {599, EIO},
		{405, EIO},    {302, EIO},
	};
	struct dt_error e;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		map(&e, cases[i].status, "", "op");
		CHECK(e.err == cases[i].err, "status %d gave errno %d, want %d", cases[i].status,
		      e.err, cases[i].err);
		CHECK(e.http_status == cases[i].status && !e.transport, "status %d kept as %d",
		      cases[i].status, e.http_status);
	}
	/* A 5xx must never read as "absent". */
	map(&e, 503, "{\"statusCode\":503,\"message\":\"Not Found\"}", "get sandbox x");
	CHECK(e.err == EIO, "503 gave %d", e.err);
}

static void test_body_shapes(void)
{
	struct dt_error e;
	char huge[300000];

	map(&e, 404,
	    "{\"statusCode\":404,\"error\":\"Not Found\",\"message\":\"Sandbox with ID or name "
	    "demo not found\"}",
	    "get sandbox demo");
	CHECK(strcmp(e.message, "get sandbox demo: Sandbox with ID or name demo not found") == 0,
	      "message string: %s", e.message);

	map(&e, 400, "{\"message\":[\"name must be a string\",\"cpu must be a number\"]}",
	    "create sandbox demo");
	CHECK(strcmp(e.message, "create sandbox demo: name must be a string, cpu must be a number") ==
		      0,
	      "message array: %s", e.message);

	map(&e, 401, "{\"statusCode\":401,\"error\":\"Unauthorized\"}", "list sandboxes");
	CHECK(strcmp(e.message, "list sandboxes: Unauthorized") == 0, "error field: %s",
	      e.message);

	map(&e, 409, "{\"message\":42,\"error\":\"Conflict\"}", "x");
	CHECK(strcmp(e.message, "x: Conflict") == 0, "non-string message: %s", e.message);

	map(&e, 404, "", "get sandbox demo");
	CHECK(strcmp(e.message, "get sandbox demo: Not Found (HTTP 404)") == 0, "empty body: %s",
	      e.message);
	map(&e, 503, NULL, "get sandbox demo");
	CHECK(strcmp(e.message, "get sandbox demo: Service Unavailable (HTTP 503)") == 0,
	      "NULL body: %s", e.message);

	map(&e, 502,
	    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\n<center><h1>502 Bad "
	    "Gateway</h1></center>\n<hr><center>nginx</center>\n</body>\n</html>\n",
	    "stop sandbox demo");
	CHECK(strcmp(e.message, "stop sandbox demo: 502 Bad Gateway") == 0, "html body: %s",
	      e.message);
	CHECK(e.err == EIO, "html 502 errno %d", e.err);
	map(&e, 500, "<html><body>oops</body></html>", "op");
	CHECK(strcmp(e.message, "op: Internal Server Error (HTTP 500)") == 0,
	      "html without title: %s", e.message);

	map(&e, 400, "  plain\ttext\r\nreason\n\n", "op");
	CHECK(strcmp(e.message, "op: plain text reason") == 0, "plain body: %s", e.message);

	/* A body cannot forge log lines or blow up the message. */
	map(&e, 400, "{\"message\":\"line1\\nline2\\u0007\"}", "op");
	CHECK(strchr(e.message, '\n') == NULL && strchr(e.message, '\a') == NULL,
	      "control characters kept: %s", e.message);

	memset(huge, 'A', sizeof(huge) - 1);
	huge[sizeof(huge) - 1] = '\0';
	map(&e, 500, huge, "op");
	CHECK(strlen(e.message) < sizeof(e.message), "huge body overflow");
	CHECK(strlen(e.message) <= 4 + DT_MAX_QUOTED_BODY + 3, "huge body not bounded: %zu",
	      strlen(e.message));
	CHECK(e.err == EIO, "huge errno %d", e.err);

	/* A huge JSON message is bounded too, and the result stays NUL-terminated. */
	{
		size_t n = 200000;
		char *json = malloc(n + 32);

		snprintf(json, 32, "{\"message\":\"");
		memset(json + strlen(json), 'm', n);
		memcpy(json + 12 + n, "\"}", 3);
		map(&e, 400, json, "op");
		CHECK(strlen(e.message) < sizeof(e.message) && strncmp(e.message, "op: mmm", 7) == 0,
		      "huge json message: %.40s", e.message);
		free(json);
	}

	/* Not JSON but starts like it. */
	map(&e, 400, "{\"message\":", "op");
	CHECK(strcmp(e.message, "op: {\"message\":") == 0, "broken json: %s", e.message);

	/* A long what plus message is cut at a character boundary, still NUL-terminated. */
	{
		char what[600];

		memset(what, 'w', sizeof(what) - 1);
		what[sizeof(what) - 1] = '\0';
		map(&e, 404, "{\"message\":\"gone\"}", what);
		CHECK(strlen(e.message) == sizeof(e.message) - 1, "long what: %zu",
		      strlen(e.message));
	}
	map(&e, 400, "{\"message\":\"caf\xc3\xa9 \xe2\x82\xac\"}", "op");
	CHECK(strcmp(e.message, "op: caf\xc3\xa9 \xe2\x82\xac") == 0, "utf-8 kept: %s", e.message);
}

static void test_transport(void)
{
	struct dt_error e;

	dt_error_from_curl(&e, CURLE_COULDNT_CONNECT, "Failed to connect to 127.0.0.1 port 9",
			   "http://127.0.0.1:9/api/sandbox", 30000, false, "list sandboxes");
	CHECK(e.err == EIO && e.http_status == 0 && e.transport, "connect: %d", e.err);
	CHECK(strcmp(e.message, "list sandboxes: cannot reach http://127.0.0.1:9/api/sandbox: "
				"Failed to connect to 127.0.0.1 port 9") == 0,
	      "connect message: %s", e.message);

	dt_error_from_curl(&e, CURLE_OPERATION_TIMEDOUT, "", "http://h/api/sandbox", 1500, false,
			   "op");
	CHECK(e.err == ETIMEDOUT && e.transport, "timeout: %d", e.err);
	CHECK(strstr(e.message, "1500 ms") != NULL, "timeout message: %s", e.message);

	dt_error_from_curl(&e, CURLE_PEER_FAILED_VERIFICATION, "SSL certificate problem",
			   "https://h/api", 1000, false, "op");
	CHECK(e.err == EIO && strstr(e.message, "TLS") && strstr(e.message, "certificate"),
	      "tls: %d %s", e.err, e.message);

	dt_error_from_curl(&e, CURLE_ABORTED_BY_CALLBACK, "", "u", 1, false, "op");
	CHECK(e.err == EINTR && !e.transport, "cancel: %d", e.err);

	dt_error_from_curl(&e, CURLE_WRITE_ERROR, "", "u", 1, true, "op");
	CHECK(e.err == EIO && strstr(e.message, "64 MiB") && !e.transport, "too large: %s",
	      e.message);

	dt_error_from_curl(&e, CURLE_GOT_NOTHING, "", "u", 1, false, "op");
	CHECK(e.err == EIO, "got nothing: %d", e.err);
}

int main(void)
{
	test_status_to_errno();
	test_body_shapes();
	test_transport();
	if (failures) {
		fprintf(stderr, "%d check(s) failed\n", failures);
		return 1;
	}
	printf("all error mapping checks passed\n");
	return 0;
}
