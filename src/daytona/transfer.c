/*
 * File transfers through the toolbox (daytona-api.md section 6): whole and
 * ranged downloads into a file descriptor or a buffer, uploads from a file
 * descriptor, and the SDK's multipart bulk download.
 *
 * Memory never grows with the file: bytes go between the socket and the fd
 * in libcurl's own buffers (pwrite/pread at explicit offsets). Transfers
 * are "streaming" requests of the engine: no overall deadline, a stall
 * limit instead, and the cancellation hook as for any request.
 */
#include "dt_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dt_multipart.h"
#include "log.h"

/* Above this, an upload asks "Expect: 100-continue" so a refusal costs no body. */
#define EXPECT_CONTINUE_OVER (1 << 20)

static int check_path(const char *path, const char *what, struct dt_error *err)
{
	if (!path || !path[0])
		return dt_error_set(err, EINVAL, 0, what, "no path");
	return 0;
}

/* ---- downloads ---- */

struct sink {
	int fd;		  /* or -1: into buf */
	bool plain_write; /* the fd cannot pwrite (a pipe): sequential writes */
	char *buf;
	size_t cap;	   /* of buf */
	bool range;	   /* a Range request */
	int64_t offset;	   /* its first byte */
	int64_t len;	   /* and length */
	bool decided;	   /* the answer's kind is known */
	bool whole;	   /* a 200 to a Range request */
	int64_t pos;	   /* file offset of the next byte that arrives */
	int64_t stored;	   /* bytes kept */
	int64_t file_size; /* from Content-Range; -1 unknown */
};

/* "bytes a-b/N" or "bytes *\/N"; each of @start/@end/@total is -1 when absent or "*". */
static int parse_content_range(const char *s, int64_t *start, int64_t *end, int64_t *total)
{
	char *p;

	*start = *end = *total = -1;
	if (strncasecmp(s, "bytes", 5) != 0)
		return -EINVAL;
	s += 5;
	while (*s == ' ')
		s++;
	if (*s == '*') {
		s++;
	} else {
		errno = 0;
		*start = strtoll(s, &p, 10);
		if (p == s || *p != '-' || errno || *start < 0)
			return -EINVAL;
		s = p + 1;
		*end = strtoll(s, &p, 10);
		if (p == s || errno || *end < *start)
			return -EINVAL;
		s = p;
	}
	if (*s != '/')
		return -EINVAL;
	s++;
	if (*s == '*')
		return s[1] ? -EINVAL : 0;
	errno = 0;
	*total = strtoll(s, &p, 10);
	if (p == s || *p || errno || *total < 0)
		return -EINVAL;
	return 0;
}

/* Fails the transfer with errno @e and the message "@prefix@detail". */
static size_t sink_fail(struct dt_transfer *t, int e, const char *prefix, const char *detail)
{
	t->sink_errno = e;
	snprintf(t->sink_message, sizeof(t->sink_message), "%s%s", prefix, detail);
	return 0;
}

static int write_at(struct sink *k, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t n;

		if (k->plain_write) {
			n = write(k->fd, data, len);
		} else {
			n = pwrite(k->fd, data, len, (off_t)k->pos);
			/* A pipe: the bytes arrive in order anyway. */
			if (n < 0 && errno == ESPIPE && k->pos == 0 && !k->range) {
				k->plain_write = true;
				continue;
			}
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		data += n;
		len -= (size_t)n;
		k->pos += n;
		k->stored += n;
	}
	return 0;
}

/* The first bytes of an answer: a 206 must be the range asked for. */
static bool sink_decide(struct dt_transfer *t, struct sink *k)
{
	int64_t start, end, total;

	k->decided = true;
	k->pos = 0;
	if (!k->range)
		return true;
	if (t->answer_status != 206) {
		k->whole = true; /* the server ignored Range: the whole file follows */
		return true;
	}
	if (parse_content_range(t->answer_content_range, &start, &end, &total) || start < 0 ||
	    start != k->offset) {
		sink_fail(t, EIO, "the server answered another range: ",
			  t->answer_content_range[0] ? t->answer_content_range : "none");
		return false;
	}
	k->pos = start;
	k->file_size = total;
	return true;
}

static size_t sink_data(struct dt_transfer *t, const char *data, size_t len)
{
	struct sink *k = t->data_arg;
	size_t n = len;
	int rc;

	if (!k->decided && !sink_decide(t, k))
		return 0;
	if (k->fd < 0) {
		/* Into the buffer: skip to the slice on a 200, keep at most cap bytes. */
		if (k->whole && k->pos < k->offset) {
			int64_t skip = k->offset - k->pos;

			if ((int64_t)n <= skip) {
				k->pos += (int64_t)n;
				return len;
			}
			data += skip;
			n -= (size_t)skip;
			k->pos += skip;
		}
		if (n > k->cap - (size_t)k->stored)
			n = k->cap - (size_t)k->stored;
		memcpy(k->buf + k->stored, data, n);
		k->stored += (int64_t)n;
		k->pos += (int64_t)n;
		if ((size_t)k->stored == k->cap) {
			t->stopped = true;
			return 0;
		}
		return len;
	}
	/* Into the fd: a 206 stops at the length asked for; a whole file is kept whole. */
	if (k->range && !k->whole && (int64_t)n > k->len - k->stored)
		n = (size_t)(k->len - k->stored);
	rc = write_at(k, data, n);
	if (rc)
		return sink_fail(t, -rc, "writing the local file: ", strerror(-rc));
	if (k->range && !k->whole && k->stored == k->len) {
		t->stopped = true;
		return 0;
	}
	return len;
}

static bool sink_restart(struct dt_transfer *t)
{
	struct sink *k = t->data_arg;

	if (k->plain_write && k->stored > 0)
		return false; /* bytes already in a pipe cannot be taken back */
	k->decided = false;
	k->whole = false;
	k->pos = 0;
	k->stored = 0;
	k->file_size = -1;
	return true;
}

/* One GET /files/download?path= into @k; @res filled for range requests. */
static int download(struct dt_toolbox *tb, const char *path, struct sink *k, const char *what,
		    struct dt_range_result *res, struct dt_error *err)
{
	const char *query[] = {"path", path, NULL};
	char range[80];
	const char *headers[] = {range, NULL};
	struct dt_transfer t = {0};
	struct dt_response resp;
	struct buf url = BUF_INIT;
	int rc;

	rc = check_path(path, what, err);
	if (!rc)
		rc = dt_toolbox_url(tb, &url, "/files/download", query, what, err);
	if (rc)
		return rc;
	k->file_size = -1;
	t.method = DT_GET;
	t.url = url.data;
	t.what = what;
	t.streaming = true;
	t.data_fn = sink_data;
	t.data_arg = k;
	t.restart_fn = sink_restart;
	if (k->range) {
		snprintf(range, sizeof(range), "Range: bytes=%" PRId64 "-%" PRId64, k->offset,
			 k->offset + k->len - 1);
		t.headers = headers;
	}
	rc = dt_toolbox_run(tb, &t, &resp, err);
	if (res && rc && resp.status == 416) {
		int64_t start, end, total;

		/* Past the end: EOF, not an error. */
		res->status = DT_RANGE_EOF;
		res->bytes = 0;
		res->file_size =
		    parse_content_range(t.answer_content_range, &start, &end, &total) == 0 ? total
											   : -1;
		rc = 0;
	} else if (res && rc == 0) {
		res->status = k->whole ? DT_RANGE_WHOLE : DT_RANGE_PARTIAL;
		res->bytes = k->stored;
		res->file_size = k->file_size;
		if (k->whole)
			res->file_size = t.answer_content_length >= 0 ? t.answer_content_length
					 : t.stopped		      ? -1
								      : k->pos;
	}
	dt_response_free(&resp);
	buf_free(&url);
	return rc;
}

int dt_fs_download_fd(struct dt_toolbox *tb, const char *path, int fd, int64_t *size,
		      struct dt_error *err)
{
	DT_ERR_GUARD(err);
	struct sink k = {.fd = fd};
	char what[256];
	int rc;

	snprintf(what, sizeof(what), "download %s", path ? path : "");
	if (size)
		*size = 0;
	if (fd < 0)
		return dt_error_set(err, EBADF, 0, what, "no file descriptor");
	rc = download(tb, path, &k, what, NULL, err);
	if (rc == 0 && size)
		*size = k.stored;
	return rc;
}

static int check_range(int64_t offset, int64_t len, const char *what, struct dt_error *err)
{
	if (offset < 0 || len < 0 || (len > 0 && offset > INT64_MAX - len))
		return dt_error_set(err, EINVAL, 0, what, "invalid range");
	return 0;
}

int dt_fs_read_range(struct dt_toolbox *tb, const char *path, int64_t offset, size_t len, void *buf,
		     struct dt_range_result *res, struct dt_error *err)
{
	DT_ERR_GUARD(err);
	struct sink k = {.fd = -1, .buf = buf, .cap = len, .range = true, .offset = offset};
	struct dt_range_result scratch;
	char what[256];
	int rc;

	if (!res)
		res = &scratch;
	*res = (struct dt_range_result){DT_RANGE_PARTIAL, 0, -1};
	snprintf(what, sizeof(what), "read %s", path ? path : "");
	if (len > (size_t)INT64_MAX)
		len = (size_t)INT64_MAX;
	k.len = (int64_t)len;
	rc = check_range(offset, k.len, what, err);
	if (rc || len == 0)
		return rc;
	if (!buf)
		return dt_error_set(err, EINVAL, 0, what, "no buffer");
	return download(tb, path, &k, what, res, err);
}

int dt_fs_download_range_fd(struct dt_toolbox *tb, const char *path, int64_t offset, int64_t len,
			    int fd, struct dt_range_result *res, struct dt_error *err)
{
	DT_ERR_GUARD(err);
	struct sink k = {.fd = fd, .range = true, .offset = offset, .len = len};
	struct dt_range_result scratch;
	char what[256];
	int rc;

	if (!res)
		res = &scratch;
	*res = (struct dt_range_result){DT_RANGE_PARTIAL, 0, -1};
	snprintf(what, sizeof(what), "read %s", path ? path : "");
	rc = check_range(offset, len, what, err);
	if (rc || len == 0)
		return rc;
	if (fd < 0)
		return dt_error_set(err, EBADF, 0, what, "no file descriptor");
	return download(tb, path, &k, what, res, err);
}

/* ---- uploads ---- */

struct reader {
	int fd;
	int64_t size;
	int64_t pos;
	struct dt_transfer *t;
};

static size_t reader_read(char *buffer, size_t size, size_t nitems, void *arg)
{
	struct reader *r = arg;
	size_t want = size * nitems;
	ssize_t n;

	if ((int64_t)want > r->size - r->pos)
		want = (size_t)(r->size - r->pos);
	if (want == 0)
		return 0;
	do
		n = pread(r->fd, buffer, want, (off_t)r->pos);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		sink_fail(r->t, errno, "reading the local file: ", strerror(errno));
		return CURL_READFUNC_ABORT;
	}
	if (n == 0) {
		sink_fail(r->t, EIO, "the local file shrank while it was sent", "");
		return CURL_READFUNC_ABORT;
	}
	r->pos += n;
	return (size_t)n;
}

static int reader_seek(void *arg, curl_off_t offset, int origin)
{
	struct reader *r = arg;

	if (origin != SEEK_SET || offset < 0 || offset > r->size)
		return CURL_SEEKFUNC_CANTSEEK;
	r->pos = offset;
	return CURL_SEEKFUNC_OK;
}

static bool reader_restart(struct dt_transfer *t)
{
	struct reader *r = t->io_arg;

	r->pos = 0;
	return true;
}

/*
 * bulk-upload answers 400 {"errors":[{"path","error"}],"files":[...]}: the
 * first error says more than the generic message.
 */
static void bulk_upload_message(struct dt_error *err, const struct dt_response *resp,
				const char *what)
{
	cJSON *root =
	    resp->body.len ? cJSON_ParseWithLength(resp->body.data, resp->body.len) : NULL;
	const cJSON *errors = cJSON_GetObjectItemCaseSensitive(root, "errors");
	const cJSON *first = cJSON_IsArray(errors) ? cJSON_GetArrayItem(errors, 0) : NULL;
	const char *text = cJSON_IsString(first) ? first->valuestring : NULL;

	if (!text)
		text = dt_json_string(first, "error");
	if (!text)
		text = dt_json_string(first, "message");
	if (text && text[0]) {
		int e = err->err, status = err->http_status;

		dt_error_set(err, e, status, what, "%.300s", text);
	}
	cJSON_Delete(root);
}

static int upload_v2(struct dt_toolbox *tb, const char *path, int mode, struct reader *r,
		     const char *what, struct dt_response *resp, struct dt_error *err)
{
	char octal[16];
	const char *query[] = {"path", path, mode >= 0 ? "mode" : NULL, octal, NULL};
	struct dt_transfer t = {0};
	struct buf url = BUF_INIT;
	int rc;

	snprintf(octal, sizeof(octal), "%04o", (unsigned)(mode >= 0 ? mode & 07777 : 0));
	rc = dt_toolbox_url(tb, &url, "/files/upload-v2", query, what, err);
	if (rc)
		return rc;
	r->t = &t;
	r->pos = 0;
	t.method = DT_POST;
	t.url = url.data;
	t.what = what;
	t.streaming = true;
	t.content_type = "application/octet-stream";
	t.read_fn = reader_read;
	t.seek_fn = reader_seek;
	t.io_arg = r;
	t.read_size = r->size;
	t.restart_fn = reader_restart;
	t.expect_continue = r->size > EXPECT_CONTINUE_OVER;
	rc = dt_toolbox_run(tb, &t, resp, err);
	buf_free(&url);
	return rc;
}

static int bulk_upload(struct dt_toolbox *tb, const char *path, struct reader *r, const char *what,
		       struct dt_error *err)
{
	const char *slash = strrchr(path, '/');
	const char *base = slash && slash[1] ? slash + 1 : path;
	struct dt_transfer t = {0};
	struct dt_response resp = {0, BUF_INIT};
	struct buf url = BUF_INIT;
	curl_mimepart *part;
	curl_mime *mime = NULL;
	CURLcode code = CURLE_OK;
	int rc;

	rc = dt_toolbox_url(tb, &url, "/files/bulk-upload", NULL, what, err);
	if (rc)
		return rc;
	/* The parts as the SDK sends them: files[0].path before files[0].file. */
	mime = curl_mime_init(NULL);
	if (!mime) {
		rc = dt_error_set(err, ENOMEM, 0, what, "out of memory");
		goto out;
	}
	part = curl_mime_addpart(mime);
	code |= part ? curl_mime_name(part, "files[0].path") : CURLE_OUT_OF_MEMORY;
	code |= part ? curl_mime_data(part, path, CURL_ZERO_TERMINATED) : CURLE_OUT_OF_MEMORY;
	part = curl_mime_addpart(mime);
	code |= part ? curl_mime_name(part, "files[0].file") : CURLE_OUT_OF_MEMORY;
	code |= part ? curl_mime_filename(part, base) : CURLE_OUT_OF_MEMORY;
	code |= part ? curl_mime_type(part, "application/octet-stream") : CURLE_OUT_OF_MEMORY;
	code |=
	    part ? curl_mime_data_cb(part, (curl_off_t)r->size, reader_read, reader_seek, NULL, r)
		 : CURLE_OUT_OF_MEMORY;
	if (code != CURLE_OK) {
		rc = dt_error_set(err, ENOMEM, 0, what, "out of memory");
		goto out;
	}
	r->t = &t;
	r->pos = 0;
	t.method = DT_POST;
	t.url = url.data;
	t.what = what;
	t.streaming = true;
	t.mime = mime;
	t.io_arg = r;
	t.restart_fn = reader_restart;
	t.expect_continue = r->size > EXPECT_CONTINUE_OVER;
	rc = dt_toolbox_run(tb, &t, &resp, err);
	if (rc && resp.status == 400)
		bulk_upload_message(err, &resp, what);
out:
	curl_mime_free(mime);
	dt_response_free(&resp);
	buf_free(&url);
	return rc;
}

/*
 * quaverd's upload-v2 answers with the FileInfo fields of the file written;
 * Daytona's with {name, path, type} only. True when @out holds them.
 */
static bool uploaded_info(struct dt_response *resp, const char *what, struct dt_file_info *out)
{
	struct dt_error ignored = {0};
	bool have;

	if (!resp->body.len || !resp->body.data)
		return false;
	/* The parser works in place: on a copy, the answer stays as it came. */
	{
		char *text = malloc(resp->body.len + 1);

		if (!text)
			return false;
		memcpy(text, resp->body.data, resp->body.len);
		text[resp->body.len] = '\0';
		have = dt_file_info_parse(text, resp->body.len, what, out, &ignored) == 0;
		free(text);
	}
	if (have && (!out->mtime.tv_sec || !memmem(resp->body.data, resp->body.len,
						   "\"permissions\"", 13))) {
		dt_file_info_clear(out);
		have = false;
	}
	return have;
}

int dt_fs_upload_fd_info(struct dt_toolbox *tb, const char *path, int fd, int64_t size, int mode,
			 struct dt_file_info *info, bool *have_info, struct dt_error *err)
{
	DT_ERR_GUARD(err);
	struct reader r = {.fd = fd, .size = size};
	struct dt_response resp = {0, BUF_INIT};
	char what[256];
	int upload_mode, rc;

	if (have_info)
		*have_info = false;
	snprintf(what, sizeof(what), "upload %s", path ? path : "");
	rc = check_path(path, what, err);
	if (rc)
		return rc;
	if (fd < 0)
		return dt_error_set(err, EBADF, 0, what, "no file descriptor");
	if (size < 0) {
		struct stat st;

		if (fstat(fd, &st))
			return dt_error_set(err, errno, 0, what, "cannot stat the local file: %s",
					    strerror(errno));
		if (!S_ISREG(st.st_mode))
			return dt_error_set(err, EINVAL, 0, what,
					    "the local file is not a regular file");
		r.size = st.st_size;
	}

	upload_mode = dt_toolbox_upload_mode(tb);
	if (upload_mode >= 0) {
		rc = upload_v2(tb, path, mode, &r, what, &resp, err);
		if (rc == 0) {
			dt_toolbox_set_upload_mode(tb, 1);
			if (info && have_info)
				*have_info = uploaded_info(&resp, what, info);
			goto out;
		}
		/* A daemon without upload-v2 has no such route; any other answer stands. */
		if (upload_mode == 1 || !(resp.status == 404 || resp.status == 405))
			goto out;
		log_debug("%s: no upload-v2 (HTTP %ld), trying bulk-upload", what, resp.status);
	}
	rc = bulk_upload(tb, path, &r, what, err);
	if (rc == 0)
		dt_toolbox_set_upload_mode(tb, -1);
out:
	dt_response_free(&resp);
	return rc;
}

int dt_fs_upload_fd(struct dt_toolbox *tb, const char *path, int fd, int64_t size,
		    struct dt_error *err)
{
	return dt_fs_upload_fd_info(tb, path, fd, size, -1, NULL, NULL, err);
}

/* ---- bulk download (multipart) ---- */

struct bulk_entry {
	bool answered;
	bool is_error;
	bool truncated;
	const char *data;
	size_t len;
};

struct bulk_state {
	const char *const *paths;
	size_t npaths;
	struct bulk_entry *entries;
};

static int bulk_part(void *arg, const struct dt_multipart_part *part)
{
	struct bulk_state *s = arg;
	bool is_error = strcmp(part->name, "error") == 0;

	if (!part->filename || (!is_error && strcmp(part->name, "file") != 0))
		return 0; /* not a part the SDK would read */
	/* Parts carry the path exactly as requested; a repeated path takes the next one. */
	for (size_t i = 0; i < s->npaths; i++) {
		struct bulk_entry *e = &s->entries[i];

		if (e->answered || strcmp(s->paths[i], part->filename) != 0)
			continue;
		e->answered = true;
		e->is_error = is_error;
		e->truncated = part->truncated;
		e->data = part->data;
		e->len = part->len;
		break;
	}
	return 0;
}

/* The status a daemon's error part stands for. */
static int error_part_status(const char *data, size_t len)
{
	static const struct {
		const char *code;
		int status;
	} codes[] = {
	    {"FILE_NOT_FOUND", 404}, {"NOT_FOUND", 404},	 {"FILE_ACCESS_DENIED", 403},
	    {"FORBIDDEN", 403},	     {"INVALID_FILE_PATH", 400}, {"BAD_REQUEST", 400},
	};
	cJSON *root = cJSON_ParseWithLength(data, len);
	const cJSON *status = cJSON_GetObjectItemCaseSensitive(root, "statusCode");
	const char *code = dt_json_string(root, "code");
	int result = 500;

	if (cJSON_IsNumber(status) && status->valuedouble >= 400 && status->valuedouble < 600)
		result = (int)status->valuedouble;
	for (size_t i = 0; code && i < sizeof(codes) / sizeof(codes[0]); i++)
		if (strcmp(code, codes[i].code) == 0)
			result = codes[i].status;
	cJSON_Delete(root);
	return result;
}

static char *bulk_body(const char *const *paths, size_t npaths)
{
	cJSON *o = cJSON_CreateObject(), *list = cJSON_AddArrayToObject(o, "paths");
	char *text = NULL;
	bool ok = o && list;

	for (size_t i = 0; ok && i < npaths; i++) {
		cJSON *s = cJSON_CreateString(paths[i]);

		ok = s && cJSON_AddItemToArray(list, s);
		if (!ok)
			cJSON_Delete(s);
	}
	if (ok)
		text = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return text;
}

int dt_fs_bulk_download(struct dt_toolbox *tb, const char *const *paths, size_t npaths,
			dt_fs_bulk_fn fn, void *arg, struct dt_error *err)
{
	DT_ERR_GUARD(err);
	const char *what = "bulk download";
	struct bulk_state state = {paths, npaths, NULL};
	struct dt_transfer t = {0};
	struct dt_response resp = {0, BUF_INIT};
	struct buf url = BUF_INIT;
	char *body = NULL;
	int rc, parsed;

	if (!paths || npaths == 0 || npaths > DT_MAX_LISTING || !fn)
		return dt_error_set(err, EINVAL, 0, what, "no paths");
	for (size_t i = 0; i < npaths; i++)
		if (!paths[i] || !paths[i][0])
			return dt_error_set(err, EINVAL, 0, what, "an empty path");
	body = bulk_body(paths, npaths);
	state.entries = calloc(npaths, sizeof(*state.entries));
	if (!body || !state.entries) {
		rc = dt_error_set(err, ENOMEM, 0, what, "out of memory");
		goto out;
	}
	rc = dt_toolbox_url(tb, &url, "/files/bulk-download", NULL, what, err);
	if (rc)
		goto out;
	t.method = DT_POST;
	t.url = url.data;
	t.what = what;
	t.streaming = true; /* a transfer: the answer is bounded by DT_MAX_RESPONSE instead */
	t.body = body;
	t.body_len = strlen(body);
	rc = dt_toolbox_run(tb, &t, &resp, err);
	if (rc)
		goto out;
	parsed = dt_multipart_parse(t.answer_content_type, resp.body.data ? resp.body.data : "",
				    resp.body.len, bulk_part, &state);
	if (parsed == -EINVAL || parsed == -ENOMEM) {
		rc = dt_error_set(err, parsed == -ENOMEM ? ENOMEM : EIO, (int)resp.status, what,
				  "the answer is not multipart (%s)",
				  t.answer_content_type[0] ? t.answer_content_type : "no type");
		goto out;
	}
	if (parsed)
		log_debug("%s: the multipart answer ended early", what);
	for (size_t i = 0; i < npaths; i++) {
		const struct bulk_entry *e = &state.entries[i];
		struct dt_error file_err = {0};

		if (!e->answered)
			dt_error_set(&file_err, EIO, 0, paths[i], "the answer has no part for it");
		else if (e->truncated)
			dt_error_set(&file_err, EIO, 0, paths[i],
				     "the answer ended inside the file");
		else if (e->is_error)
			dt_error_from_http(&file_err, error_part_status(e->data, e->len), e->data,
					   e->len, paths[i]);
		rc = file_err.err ? fn(arg, i, paths[i], NULL, 0, &file_err)
				  : fn(arg, i, paths[i], e->data, e->len, NULL);
		if (rc)
			break;
	}
out:
	free(state.entries);
	free(body);
	dt_response_free(&resp);
	buf_free(&url);
	return rc;
}
