/*
 * The toolbox's entry (toolbox.h): routing under /toolbox/{sandboxId}/,
 * the started-sandbox check, the daemon's error shape, FileInfo, and the
 * small info routes (/version, /user-home-dir, /work-dir). The file routes
 * live in toolbox_files.c, toolbox_upload.c and toolbox_search.c.
 */
#define QUAVERD_TOOLBOX_INTERNAL
#include "toolbox.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "process.h"
#include "pty.h"
#include "util.h"

/* ---- errors -------------------------------------------------------------------- */

static const char *generic_code(int status)
{
	switch (status) {
	case 400:
		return "BAD_REQUEST";
	case 401:
		return "UNAUTHORIZED";
	case 403:
		return "FORBIDDEN";
	case 404:
		return "NOT_FOUND";
	case 408:
		return "REQUEST_TIMEOUT";
	case 409:
		return "CONFLICT";
	case 410:
		return "GONE";
	case 413:
		return "PAYLOAD_TOO_LARGE";
	case 416:
		return "RANGE_NOT_SATISFIABLE";
	case 422:
		return "UNPROCESSABLE_ENTITY";
	default:
		return "INTERNAL_SERVER_ERROR";
	}
}

char *tb_error_json(const struct http_request *req, int status, const char *code,
		    const char *message)
{
	char stamp[32];
	cJSON *o = cJSON_CreateObject();
	char *text;

	if (!o)
		return NULL;
	iso8601_ms(now_wall_ms(), stamp);
	cJSON_AddNumberToObject(o, "statusCode", status);
	/* "error" is the API's field (1.3); clients of either shape find theirs. */
	cJSON_AddStringToObject(o, "error", http_reason(status));
	cJSON_AddStringToObject(o, "message", message);
	cJSON_AddStringToObject(o, "code", code ? code : generic_code(status));
	cJSON_AddStringToObject(o, "timestamp", stamp);
	cJSON_AddStringToObject(o, "path", req && req->path ? req->path : "");
	cJSON_AddStringToObject(o, "method", req ? req->method : "");
	text = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return text;
}

static void reply_error(const struct http_request *req, struct http_response *resp, int status,
			const char *code, const char *message)
{
	char *text = tb_error_json(req, status, code, message);

	resp->status = status;
	copy_str(resp->content_type, sizeof(resp->content_type), "application/json");
	buf_reset(&resp->body);
	if (resp->file_fd >= 0) {
		close(resp->file_fd);
		resp->file_fd = -1;
	}
	if (text)
		buf_append_str(&resp->body, text);
	free(text);
	if (status >= 500)
		log_error("%s %s: %s", req->method, req->path, message);
}

void tb_error(struct tb_call *c, int status, const char *code, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	reply_error(c->req, c->resp, status, code, msg);
}

void tb_errno_status(int rc, int *status, const char **code)
{
	switch (rc) {
	case -ENOENT:
		*status = 404;
		*code = "FILE_NOT_FOUND";
		break;
	case -EACCES:
	case -EPERM:
	case -EROFS:
		*status = 403;
		*code = "FILE_ACCESS_DENIED";
		break;
	case -ENOTDIR:
	case -EISDIR:
	case -EINVAL:
	case -ENAMETOOLONG:
	case -ELOOP:
	case -EXDEV:
		*status = 400;
		*code = "INVALID_FILE_PATH";
		break;
	case -EEXIST:
	case -ENOTEMPTY:
	case -EBUSY:
	case -ESTALE:
		*status = 409;
		*code = "CONFLICT";
		break;
	case -ENOSPC:
	case -EDQUOT:
	case -EFBIG:
		*status = 507;
		*code = "INSUFFICIENT_STORAGE";
		break;
	default:
		*status = 500;
		*code = "INTERNAL_SERVER_ERROR";
		break;
	}
}

void tb_errno(struct tb_call *c, int rc, const char *what, const char *path)
{
	const char *code, *why;
	int status;

	tb_errno_status(rc, &status, &code);
	switch (rc) {
	case -EROFS:
		why = "read-only file system";
		break;
	case -ELOOP:
		why = "too many levels of symbolic links";
		break;
	case -EBUSY:
		why = "it is a mount point";
		break;
	case -ESTALE:
		why = "it changed while being opened";
		break;
	default:
		why = strerror(-rc);
		break;
	}
	tb_error(c, status, code, "%s %s: %s", what, path, why);
}

void tb_json(struct tb_call *c, int status, cJSON *json)
{
	http_reply_json(c->resp, status, json);
}

void tb_reply_empty(struct tb_call *c, int status)
{
	c->resp->status = status;
	buf_reset(&c->resp->body);
}

const char *tb_need(struct tb_call *c, const char *name)
{
	const char *v = http_param(c->req, name);

	if (!v || !v[0]) {
		tb_error(c, 400, "BAD_REQUEST", "the %s query parameter is required", name);
		return NULL;
	}
	return v;
}

bool tb_parse_mode(const char *s, mode_t *out)
{
	unsigned long v = 0;

	if (!s || !*s || strlen(s) > 5)
		return false;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '7')
			return false;
		v = v * 8 + (unsigned long)(*p - '0');
	}
	if (v > 07777)
		return false;
	*out = (mode_t)v;
	return true;
}

char *tb_join(const char *dir, const char *name)
{
	size_t dl = strlen(dir);
	char *out;

	if (dl > 0 && dir[dl - 1] == '/')
		dl--;
	if (asprintf(&out, "%.*s/%s", (int)dl, dir, name) < 0)
		return NULL;
	return out;
}

/* ---- FileInfo -------------------------------------------------------------------- */

int tb_json_string(struct buf *out, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)s, *end = p + len;

	if (buf_reserve(out, len + 2) < 0 || buf_append(out, "\"", 1) < 0)
		return -ENOMEM;
	while (p < end) {
		unsigned char ch = *p;
		size_t n = 0;

		if (ch == '"' || ch == '\\') {
			char esc[2] = {'\\', (char)ch};
			if (buf_append(out, esc, 2) < 0)
				return -ENOMEM;
			p++;
			continue;
		}
		if (ch < 0x20) {
			char esc[6] = {'\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15]};
			if (buf_append(out, esc, 6) < 0)
				return -ENOMEM;
			p++;
			continue;
		}
		if (ch < 0x80) {
			if (buf_append(out, p, 1) < 0)
				return -ENOMEM;
			p++;
			continue;
		}
		/* A well-formed UTF-8 sequence passes; anything else becomes U+FFFD. */
		if (ch >= 0xc2 && ch <= 0xdf)
			n = 2;
		else if (ch >= 0xe0 && ch <= 0xef)
			n = 3;
		else if (ch >= 0xf0 && ch <= 0xf4)
			n = 4;
		if (n && (size_t)(end - p) >= n) {
			bool ok = true;
			for (size_t i = 1; i < n; i++)
				ok = ok && (p[i] & 0xc0) == 0x80;
			if (ok && n == 3 && ch == 0xe0 && p[1] < 0xa0)
				ok = false; /* overlong */
			if (ok && n == 3 && ch == 0xed && p[1] >= 0xa0)
				ok = false; /* surrogate */
			if (ok && n == 4 && ch == 0xf0 && p[1] < 0x90)
				ok = false;
			if (ok && n == 4 && ch == 0xf4 && p[1] >= 0x90)
				ok = false;
			if (ok) {
				if (buf_append(out, p, n) < 0)
					return -ENOMEM;
				p += n;
				continue;
			}
		}
		if (buf_append(out, "\xef\xbf\xbd", 3) < 0)
			return -ENOMEM;
		p++;
	}
	return buf_append(out, "\"", 1);
}

/* Go's FileMode.String(): type letters (or '-') then rwxrwxrwx. */
static void go_mode_string(mode_t mode, char *out)
{
	size_t n = 0;
	static const char rwx[] = "rwxrwxrwx";

	if (S_ISDIR(mode))
		out[n++] = 'd';
	if (S_ISLNK(mode))
		out[n++] = 'L';
	if (S_ISBLK(mode))
		out[n++] = 'D';
	if (S_ISCHR(mode)) {
		out[n++] = 'D';
		out[n++] = 'c';
	}
	if (S_ISFIFO(mode))
		out[n++] = 'p';
	if (S_ISSOCK(mode))
		out[n++] = 'S';
	if (mode & S_ISUID)
		out[n++] = 'u';
	if (mode & S_ISGID)
		out[n++] = 'g';
	if (mode & S_ISVTX)
		out[n++] = 't';
	if (n == 0)
		out[n++] = '-';
	for (int i = 0; i < 9; i++)
		out[n++] = (mode & (1u << (8 - i))) ? rwx[i] : '-';
	out[n] = '\0';
}

/* Go's time formats with ".999999999": the fraction without trailing zeros, none when 0. */
static void go_fraction(long nsec, char *out, size_t size)
{
	char digits[16];
	int len;

	if (nsec <= 0) {
		out[0] = '\0';
		return;
	}
	len = snprintf(digits, sizeof(digits), "%09ld", nsec);
	while (len > 0 && digits[len - 1] == '0')
		len--;
	snprintf(out, size, ".%.*s", len, digits);
}

/* "2026-06-23 15:33:38.123456789 +0000 UTC" and "2026-06-23T15:33:38.123456789Z" */
static void go_times(const struct timespec *ts, char *mod_time, size_t mt_size, char *rfc,
		     size_t rfc_size)
{
	struct tm tm;
	char day[32], frac[16];

	gmtime_r(&ts->tv_sec, &tm);
	strftime(day, sizeof(day), "%Y-%m-%d", &tm);
	go_fraction(ts->tv_nsec, frac, sizeof(frac));
	snprintf(mod_time, mt_size, "%s %02d:%02d:%02d%s +0000 UTC", day, tm.tm_hour, tm.tm_min,
		 tm.tm_sec, frac);
	snprintf(rfc, rfc_size, "%sT%02d:%02d:%02d%sZ", day, tm.tm_hour, tm.tm_min, tm.tm_sec,
		 frac);
}

int tb_file_info_text(struct buf *out, const struct view *v, int mount, const struct stat *st,
		      const char *name, const char *shown_path)
{
	char mode[24], mod_time[64], rfc[64];
	int rc = 0;

	go_mode_string(st->st_mode, mode);
	go_times(&st->st_mtim, mod_time, sizeof(mod_time), rfc, sizeof(rfc));
	rc |= buf_append_str(out, "{\"name\":");
	rc |= tb_json_string(out, name, strlen(name));
	rc |= buf_append_str(out, ",\"path\":");
	rc |= tb_json_string(out, shown_path, strlen(shown_path));
	rc |= buf_printf(out,
			 ",\"size\":%lld,\"isDir\":%s,\"mode\":\"%s\",\"permissions\":\"%04o\","
			 "\"owner\":\"%u\",\"group\":\"%u\",\"modTime\":\"%s\","
			 "\"modifiedAt\":\"%s\"}",
			 (long long)st->st_size, S_ISDIR(st->st_mode) ? "true" : "false", mode,
			 (unsigned)(st->st_mode & 0777), view_uid_seen(v, mount, st->st_uid),
			 view_gid_seen(v, mount, st->st_gid), mod_time, rfc);
	return rc ? -ENOMEM : 0;
}

cJSON *tb_file_info(const struct view *v, const struct view_node *node, const char *name,
		    const char *shown_path)
{
	struct buf text = BUF_INIT;
	cJSON *o = NULL;

	if (tb_file_info_text(&text, v, node->mount, &node->st, name, shown_path) == 0)
		o = cJSON_Parse(buf_str(&text));
	buf_free(&text);
	return o;
}

/* ---- info routes ---------------------------------------------------------------- */

static void reply_dir(struct tb_call *c)
{
	cJSON *o = cJSON_CreateObject();

	cJSON_AddStringToObject(o, "dir", VIEW_HOME);
	tb_json(c, 200, o);
}

static void reply_version(struct tb_call *c)
{
	cJSON *o = cJSON_CreateObject();

	cJSON_AddStringToObject(o, "version", QUAVER_VERSION);
	tb_json(c, 200, o);
}

/* ---- routing ------------------------------------------------------------------- */

enum tb_method { M_GET = 1, M_POST = 2, M_DELETE = 4 };

struct tb_route {
	const char *path;
	int methods;
	void (*fn)(struct tb_call *c);
};

static void upload_v1(struct tb_call *c)
{
	tb_upload(c, false);
}

static void upload_v2(struct tb_call *c)
{
	tb_upload(c, true);
}

static void files_root(struct tb_call *c)
{
	if (!strcmp(c->req->method, "DELETE"))
		tb_delete(c);
	else
		tb_list(c);
}

static const struct tb_route routes[] = {
    {"files", M_GET | M_DELETE, files_root},
    {"files/info", M_GET, tb_info},
    {"files/download", M_GET, tb_download},
    {"files/bulk-download", M_POST, tb_bulk_download},
    {"files/upload", M_POST, upload_v1},
    {"files/upload-v2", M_POST, upload_v2},
    {"files/bulk-upload", M_POST, tb_bulk_upload},
    {"files/folder", M_POST, tb_folder},
    {"files/move", M_POST, tb_move},
    {"files/permissions", M_POST, tb_permissions},
    {"files/find", M_GET, tb_find},
    {"files/search", M_GET, tb_search},
    {"files/replace", M_POST, tb_replace},
    {"user-home-dir", M_GET, reply_dir},
    {"work-dir", M_GET, reply_dir},
    {"version", M_GET, reply_version},
    {"process/pty", M_GET | M_POST, tb_pty}, /* pty.c, before the process/ prefix */
    {"process/pty/", M_GET | M_POST | M_DELETE, tb_pty},
    /* A path ending in '/' is a prefix: the handler routes what follows (process.c). */
    {"process/", M_GET | M_POST | M_DELETE, tb_process},
    {"env", M_POST, tb_env},
};

static int method_bit(const char *m)
{
	if (!strcmp(m, "GET") || !strcmp(m, "HEAD"))
		return M_GET;
	if (!strcmp(m, "POST"))
		return M_POST;
	if (!strcmp(m, "DELETE"))
		return M_DELETE;
	return 0;
}

/* Splits "ID/files/info/" into the id and "files/info"; false when there is no route part. */
static bool split_rest(const char *rest, char *id, size_t id_size, char *route, size_t route_size)
{
	size_t n, len;

	while (*rest == '/')
		rest++;
	n = strcspn(rest, "/");
	if (n == 0 || n >= id_size)
		return false;
	memcpy(id, rest, n);
	id[n] = '\0';
	rest += n;
	while (*rest == '/')
		rest++;
	len = strlen(rest);
	while (len > 0 && rest[len - 1] == '/')
		len--;
	if (len == 0 || len >= route_size)
		return false;
	memcpy(route, rest, len);
	route[len] = '\0';
	return true;
}

static const struct tb_route *find_route(const char *route, const char *method, bool *path_known)
{
	*path_known = false;
	for (size_t i = 0; i < ARRAY_SIZE(routes); i++) {
		size_t len = strlen(routes[i].path);
		bool prefix = routes[i].path[len - 1] == '/';

		if (prefix ? strncmp(routes[i].path, route, len) : strcmp(routes[i].path, route))
			continue;
		*path_known = true;
		if (routes[i].methods & method_bit(method))
			return &routes[i];
	}
	return NULL;
}

bool toolbox_body_policy(const char *method, const char *path, struct http_body_policy *policy)
{
	char id[128], route[1024];

	if (strcmp(method, "POST") || strncmp(path, "/toolbox/", 9) ||
	    !split_rest(path + 9, id, sizeof(id), route, sizeof(route)))
		return false;
	if (strcmp(route, "files/upload") && strcmp(route, "files/upload-v2") &&
	    strcmp(route, "files/bulk-upload"))
		return false;
	policy->max_bytes = TOOLBOX_MAX_UPLOAD;
	policy->spool_over = TOOLBOX_SPOOL_OVER;
	return true;
}

void toolbox_handle(struct store *st, const struct http_request *req, struct http_response *resp,
		    const char *rest)
{
	struct tb_call c = {.store = st, .req = req, .resp = resp};
	struct store_sandbox_info info;
	struct store_err serr = {{0}};
	struct view_err verr;
	char id[128], route[1024];
	const struct tb_route *r;
	bool known;
	int rc;

	if (!split_rest(rest, id, sizeof(id), route, sizeof(route))) {
		reply_error(req, resp, 404, "NOT_FOUND", "Not Found");
		return;
	}
	r = find_route(route, req->method, &known);
	if (!r) {
		char msg[256];
		snprintf(msg, sizeof(msg), "Cannot %s %s", req->method, req->path);
		reply_error(req, resp, known ? 405 : 404,
			    known ? "METHOD_NOT_ALLOWED" : "NOT_FOUND", msg);
		return;
	}
	c.route = route; /* the path itself: a prefix route's handler reads the rest */
	/* The toolbox names a sandbox by its id only, as the SDK does. */
	rc = store_sandbox_get(st, id, &info, &serr);
	if (rc == 0 && strcmp(info.id, id)) {
		store_sandbox_info_free(&info);
		rc = -ENOENT;
	}
	if (rc < 0) {
		tb_error(&c, rc == -ENOENT ? 404 : 500, rc == -ENOENT ? "NOT_FOUND" : NULL,
			 "Sandbox with ID %s not found", id);
		return;
	}
	store_touch(st, info.id);
	if (strcmp(info.state, "started")) {
		tb_error(&c, 409, "CONFLICT", "Sandbox %s is not started (state: %s)", id,
			 info.state);
		store_sandbox_info_free(&info);
		return;
	}
	store_sandbox_info_free(&info);
	rc = view_build(st, id, &c.view, &verr);
	if (rc == -EINVAL && strstr(verr.msg, "not started")) {
		/* It stopped between the two looks: the store's sentence names the state. */
		const char *state = strstr(verr.msg, "(state: ");
		tb_error(&c, 409, "CONFLICT", "Sandbox %s is not started %s", id,
			 state ? state : "");
		return;
	}
	if (rc < 0) {
		if (rc == -ENOENT && !verr.msg[0])
			tb_error(&c, 404, "NOT_FOUND", "Sandbox with ID %s not found", id);
		else
			tb_error(&c, rc == -ENOENT ? 404 : 500, NULL,
				 "Sandbox %s: its filesystem is not available: %s", id, verr.msg);
		return;
	}
	r->fn(&c);
	view_free(&c.view);
}
