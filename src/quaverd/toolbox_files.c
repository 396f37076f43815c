/*
 * Toolbox file routes that read or rearrange (daytona-api.md section 6):
 * list, info, download (with Range), bulk-download, folder, delete, move,
 * permissions. Every path goes through the view's resolver (view.h); every
 * change happens relative to the directory fd the resolver returned.
 */
#define QUAVERD_TOOLBOX_INTERNAL
#include "toolbox.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

/* The most entries one listing returns (a hostile sandbox must not exhaust our memory). */
#define LIST_MAX_ENTRIES 250000
#define LIST_MAX_DEPTH 64
/* Bulk-download responses larger than this are built in an unnamed temp file. */
#define BULK_MEM_MAX (8u << 20)
/* Deeper trees are refused (each level holds a directory fd while it is walked). */
#define TREE_MAX_DEPTH 256

static int resolve(struct tb_call *c, const char *path, int flags, struct view_node *n)
{
	int rc = view_resolve(&c->view, path, flags, n);

	if (rc < 0)
		tb_errno(c, rc, "cannot resolve", path);
	return rc;
}

static const char *base_name(const char *path)
{
	size_t len = strlen(path);
	const char *p;

	while (len > 1 && path[len - 1] == '/')
		len--;
	if (len == 1 && path[0] == '/')
		return "/";
	p = memrchr(path, '/', len);
	return p ? p + 1 : path;
}

static void reply_text(struct tb_call *c, int status, struct buf *text)
{
	c->resp->status = status;
	copy_str(c->resp->content_type, sizeof(c->resp->content_type), "application/json");
	buf_free(&c->resp->body);
	c->resp->body = *text;
	*text = (struct buf)BUF_INIT;
}

/* ---- list and info ------------------------------------------------------------------ */

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names in a directory, sorted as Go's os.ReadDir sorts them. */
static int read_names(int dfd, char ***names, size_t *count)
{
	DIR *dir = fdopendir(dfd);
	struct dirent *de;
	size_t n = 0, cap = 0;
	char **v = NULL;

	if (!dir) {
		close(dfd);
		return -errno;
	}
	while ((de = readdir(dir)) != NULL) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
		    !strncmp(de->d_name, TB_UPLOAD_PREFIX, strlen(TB_UPLOAD_PREFIX)))
			continue;
		if (n == LIST_MAX_ENTRIES) {
			closedir(dir);
			for (size_t i = 0; i < n; i++)
				free(v[i]);
			free(v);
			return -E2BIG;
		}
		if (n == cap) {
			char **grown;
			cap = cap ? cap * 2 : 64;
			grown = realloc(v, cap * sizeof(*v));
			if (!grown)
				goto nomem;
			v = grown;
		}
		if (!(v[n] = strdup(de->d_name)))
			goto nomem;
		n++;
	}
	closedir(dir);
	if (n > 1) /* an empty directory leaves v NULL, which qsort may not take */
		qsort(v, n, sizeof(*v), cmp_names);
	*names = v;
	*count = n;
	return 0;
nomem:
	closedir(dir);
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
	return -ENOMEM;
}

struct lister {
	struct tb_call *c;
	struct buf out;
	size_t entries;
};

/*
 * Appends the entries of the directory @node (shown as @shown) and, with
 * @depth > 1, of its subdirectories (not through symlinks, as a walk does).
 * Entries that fail stat (broken or escaping links) are skipped.
 */
static int list_dir(struct lister *l, const struct view_node *node, const char *shown, int depth)
{
	const struct view *v = &l->c->view;
	char **names = NULL;
	size_t count = 0;
	int dfd, rc;

	dfd = view_node_open(node, 0);
	if (dfd < 0)
		return dfd;
	rc = read_names(dfd, &names, &count);
	if (rc < 0)
		return rc;
	dfd = view_node_open(node, 0);
	for (size_t i = 0; i < count && rc == 0; i++) {
		char *vpath = tb_join(node->vpath, names[i]);
		char *show = tb_join(shown, names[i]);
		struct view_node child;
		bool have_child = false, recurse = false;
		struct stat st;
		int mount = node->mount;

		if (!vpath || !show) {
			rc = -ENOMEM;
		} else if (view_mount_at(v, vpath) > 0 || dfd < 0) {
			if (view_resolve(v, vpath, 0, &child) == 0 && child.fd >= 0) {
				have_child = true;
				st = child.st;
				mount = child.mount;
			}
		} else if (fstatat(dfd, names[i], &st, AT_SYMLINK_NOFOLLOW) == 0) {
			if (S_ISLNK(st.st_mode)) {
				/* stat follows links, inside the view only. */
				if (view_resolve(v, vpath, 0, &child) == 0 && child.fd >= 0) {
					st = child.st;
					mount = child.mount;
				} else {
					st.st_mode = 0; /* skipped */
				}
				view_node_release(&child);
			} else {
				recurse = S_ISDIR(st.st_mode);
			}
		} else {
			st.st_mode = 0;
		}
		if (have_child)
			recurse = S_ISDIR(st.st_mode);
		if (rc == 0 && (st.st_mode != 0 || have_child)) {
			if (++l->entries > LIST_MAX_ENTRIES)
				rc = -E2BIG;
			else if ((l->out.len > 1 && buf_append_str(&l->out, ",") < 0) ||
				 tb_file_info_text(&l->out, v, mount, &st, names[i], show) < 0)
				rc = -ENOMEM;
		}
		if (rc == 0 && recurse && depth > 1) {
			struct view_node sub;
			if (view_resolve(v, vpath, 0, &sub) == 0 && sub.fd >= 0 &&
			    S_ISDIR(sub.st.st_mode)) {
				rc = list_dir(l, &sub, show, depth - 1);
				if (rc == -EACCES)
					rc = 0; /* an unreadable subdirectory is listed, not entered
						 */
			}
			view_node_release(&sub);
		}
		if (have_child)
			view_node_release(&child);
		free(vpath);
		free(show);
	}
	if (dfd >= 0)
		close(dfd);
	for (size_t i = 0; i < count; i++)
		free(names[i]);
	free(names);
	return rc;
}

void tb_list(struct tb_call *c)
{
	const char *path = http_param(c->req, "path");
	const char *depth_s = http_param(c->req, "depth");
	struct lister l = {.c = c, .out = BUF_INIT};
	struct view_node node;
	int64_t depth = 1;
	int rc;

	if (!path || !path[0])
		path = VIEW_HOME;
	if (depth_s && depth_s[0] && parse_int64(depth_s, 1, LIST_MAX_DEPTH, &depth) < 0) {
		tb_error(c, 400, "BAD_REQUEST", "depth must be an integer from 1 to %d",
			 LIST_MAX_DEPTH);
		return;
	}
	if (resolve(c, path, 0, &node) < 0)
		return;
	if (node.fd < 0) {
		tb_errno(c, -ENOENT, "cannot list", path);
		goto out;
	}
	if (!S_ISDIR(node.st.st_mode)) {
		tb_error(c, 400, "INVALID_FILE_PATH", "cannot list %s: not a directory", path);
		goto out;
	}
	buf_append_str(&l.out, "[");
	rc = list_dir(&l, &node, path, (int)depth);
	if (rc == -E2BIG) {
		tb_error(c, 400, "BAD_REQUEST", "cannot list %s: more than %d entries", path,
			 LIST_MAX_ENTRIES);
	} else if (rc < 0) {
		tb_errno(c, rc, "cannot list", path);
	} else if (buf_append_str(&l.out, "]") < 0) {
		tb_error(c, 500, NULL, "out of memory");
	} else {
		reply_text(c, 200, &l.out);
	}
out:
	buf_free(&l.out);
	view_node_release(&node);
}

void tb_info(struct tb_call *c)
{
	const char *path = tb_need(c, "path");
	struct view_node node;
	struct buf text = BUF_INIT;

	if (!path || resolve(c, path, 0, &node) < 0)
		return;
	if (node.fd < 0)
		tb_errno(c, -ENOENT, "cannot stat", path);
	else if (tb_file_info_text(&text, &c->view, node.mount, &node.st, base_name(path), path) <
		 0)
		tb_error(c, 500, NULL, "out of memory");
	else
		reply_text(c, 200, &text);
	buf_free(&text);
	view_node_release(&node);
}

/* ---- download ------------------------------------------------------------------- */

/*
 * A single "bytes=" range as Go's http.ServeContent reads it. Returns 0 to
 * send the whole file (no Range, or several ranges), 1 for a part, -1 for 416.
 */
static int parse_range(const char *h, off_t size, off_t *start, off_t *len)
{
	const char *spec, *dash;
	char a[32], b[32];
	int64_t x, y;

	if (!h)
		return 0;
	while (*h == ' ')
		h++;
	if (strncmp(h, "bytes=", 6) != 0)
		return -1;
	spec = h + 6;
	while (*spec == ' ')
		spec++;
	if (strchr(spec, ','))
		return 0; /* several ranges: the whole file is a valid answer */
	dash = strchr(spec, '-');
	if (!dash || (size_t)(dash - spec) >= sizeof(a) || strlen(dash + 1) >= sizeof(b))
		return -1;
	snprintf(a, sizeof(a), "%.*s", (int)(dash - spec), spec);
	snprintf(b, sizeof(b), "%s", dash + 1);
	for (char *t = b + strlen(b); t > b && t[-1] == ' '; *--t = '\0')
		;
	if (!a[0]) {
		/* "-n": the last n bytes */
		if (!b[0] || parse_int64(b, 0, INT64_MAX, &y) < 0 || y == 0 || size == 0)
			return -1;
		if (y > size)
			y = size;
		*start = size - y;
		*len = y;
		return 1;
	}
	if (parse_int64(a, 0, INT64_MAX, &x) < 0)
		return -1;
	if (x >= size)
		return -1;
	if (!b[0]) {
		y = size - 1;
	} else {
		if (parse_int64(b, 0, INT64_MAX, &y) < 0 || y < x)
			return -1;
		if (y >= size)
			y = size - 1;
	}
	*start = x;
	*len = y - x + 1;
	return 1;
}

/* A Content-Disposition filename: quotes and backslashes escaped, no line breaks. */
static void quoted_filename(struct buf *out, const char *name)
{
	for (const char *p = name; *p; p++) {
		if (*p == '"' || *p == '\\')
			buf_append(out, "\\", 1);
		if (*p == '\r' || *p == '\n')
			buf_append_str(out, *p == '\r' ? "%0D" : "%0A");
		else
			buf_append(out, p, 1);
	}
}

static void ext_filename(struct buf *out, const char *name)
{
	static const char hex[] = "0123456789ABCDEF";

	buf_append_str(out, "utf-8''");
	for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || strchr("!#$&+-.^_`|~", *p)) {
			buf_append(out, p, 1);
		} else {
			char esc[3] = {'%', hex[*p >> 4], hex[*p & 15]};
			buf_append(out, esc, 3);
		}
	}
}

/* Resolves @path to a regular file and opens it; replies and returns -1 on error. */
static int open_regular(struct tb_call *c, const char *path, struct view_node *node)
{
	int fd;

	if (resolve(c, path, 0, node) < 0)
		return -1;
	if (node->fd < 0) {
		tb_errno(c, -ENOENT, "cannot open", path);
		return -1;
	}
	if (S_ISDIR(node->st.st_mode)) {
		tb_error(c, 400, "INVALID_FILE_PATH", "cannot download %s: it is a directory",
			 path);
		return -1;
	}
	if (!S_ISREG(node->st.st_mode)) {
		tb_error(c, 400, "INVALID_FILE_PATH", "cannot download %s: not a regular file",
			 path);
		return -1;
	}
	fd = view_node_open(node, 0);
	if (fd < 0) {
		tb_errno(c, fd, "cannot open", path);
		return -1;
	}
	return fd;
}

void tb_download(struct tb_call *c)
{
	const char *path = tb_need(c, "path");
	struct view_node node;
	struct buf disp = BUF_INIT;
	char range[96], stamp[64];
	off_t start = 0, len;
	struct stat st;
	struct tm tm;
	int fd, r;

	if (!path)
		return;
	fd = open_regular(c, path, &node);
	if (fd < 0)
		goto out;
	if (fstat(fd, &st) < 0) {
		tb_errno(c, -errno, "cannot stat", path);
		close(fd);
		goto out;
	}
	len = st.st_size;
	r = parse_range(http_header(c->req, "range"), st.st_size, &start, &len);
	if (r < 0) {
		close(fd);
		tb_error(c, 416, "RANGE_NOT_SATISFIABLE",
			 "the range %s cannot be satisfied: %s is %lld bytes",
			 http_header(c->req, "range"), path, (long long)st.st_size);
		snprintf(range, sizeof(range), "bytes */%lld", (long long)st.st_size);
		http_add_header(c->resp, "Content-Range", range);
		goto out;
	}
	c->resp->status = r ? 206 : 200;
	copy_str(c->resp->content_type, sizeof(c->resp->content_type), "application/octet-stream");
	c->resp->file_fd = fd;
	c->resp->file_off = start;
	c->resp->file_len = len;
	if (r) {
		snprintf(range, sizeof(range), "bytes %lld-%lld/%lld", (long long)start,
			 (long long)(start + len - 1), (long long)st.st_size);
		http_add_header(c->resp, "Content-Range", range);
	}
	http_add_header(c->resp, "Accept-Ranges", "bytes");
	buf_append_str(&disp, "attachment; filename=\"");
	quoted_filename(&disp, base_name(path));
	buf_append_str(&disp, "\"");
	http_add_header(c->resp, "Content-Disposition", buf_str(&disp));
	gmtime_r(&st.st_mtim.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%a, %d %b %Y %H:%M:%S GMT", &tm);
	http_add_header(c->resp, "Last-Modified", stamp);
out:
	buf_free(&disp);
	view_node_release(&node);
}

/* ---- bulk download --------------------------------------------------------------------- */

#define BULK_BOUNDARY "DAYTONA-FILE-BOUNDARY"

/* Where a bulk-download response is built: memory, then an unnamed file once large. */
struct sink {
	struct tb_call *c;
	struct buf mem;
	int fd;
	uint64_t len;
};

static int sink_write(struct sink *s, const void *data, size_t n)
{
	if (s->fd < 0 && s->mem.len + n > BULK_MEM_MAX) {
		char dir[PATH_MAX];

		if (snprintf(dir, sizeof(dir), "%s/tmp", s->c->view.state_dir) >= (int)sizeof(dir))
			return -ENAMETOOLONG;
		s->fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
		if (s->fd < 0)
			return -errno;
		for (size_t off = 0; off < s->mem.len;) {
			ssize_t w = write(s->fd, s->mem.data + off, s->mem.len - off);
			if (w < 0) {
				if (errno == EINTR)
					continue;
				return -errno;
			}
			off += (size_t)w;
		}
		buf_free(&s->mem);
	}
	if (s->fd < 0) {
		if (buf_append(&s->mem, data, n) < 0)
			return -ENOMEM;
	} else {
		for (size_t off = 0; off < n;) {
			ssize_t w = write(s->fd, (const char *)data + off, n - off);
			if (w < 0) {
				if (errno == EINTR)
					continue;
				return -errno;
			}
			off += (size_t)w;
		}
	}
	s->len += n;
	return 0;
}

static int sink_str(struct sink *s, const char *text)
{
	return sink_write(s, text, strlen(text));
}

static const char *guess_type(const char *path)
{
	static const char *const types[][2] = {
	    {".txt", "text/plain; charset=utf-8"},
	    {".html", "text/html; charset=utf-8"},
	    {".htm", "text/html; charset=utf-8"},
	    {".css", "text/css; charset=utf-8"},
	    {".js", "text/javascript; charset=utf-8"},
	    {".mjs", "text/javascript; charset=utf-8"},
	    {".json", "application/json"},
	    {".xml", "text/xml; charset=utf-8"},
	    {".csv", "text/csv; charset=utf-8"},
	    {".md", "text/markdown; charset=utf-8"},
	    {".png", "image/png"},
	    {".jpg", "image/jpeg"},
	    {".jpeg", "image/jpeg"},
	    {".gif", "image/gif"},
	    {".svg", "image/svg+xml"},
	    {".webp", "image/webp"},
	    {".pdf", "application/pdf"},
	    {".zip", "application/zip"},
	    {".gz", "application/gzip"},
	    {".tar", "application/x-tar"},
	    {".wasm", "application/wasm"},
	};
	const char *base = base_name(path), *dot = strrchr(base, '.');

	if (dot)
		for (size_t i = 0; i < ARRAY_SIZE(types); i++)
			if (!strcasecmp(dot, types[i][0]))
				return types[i][1];
	return "application/octet-stream";
}

static int part_headers(struct sink *s, const char *field, const char *path, const char *type,
			uint64_t length)
{
	struct buf h = BUF_INIT;
	int rc;

	buf_printf(&h, "--%s\r\nContent-Disposition: form-data; name=\"%s\"; filename=\"",
		   BULK_BOUNDARY, field);
	quoted_filename(&h, path);
	buf_append_str(&h, "\"; filename*=");
	ext_filename(&h, path);
	buf_printf(&h, "\r\nContent-Type: %s\r\nContent-Length: %" PRIu64 "\r\n\r\n", type, length);
	rc = h.data ? sink_write(s, h.data, h.len) : -ENOMEM;
	buf_free(&h);
	return rc;
}

static int error_part(struct sink *s, const char *path, int err)
{
	const char *code;
	char msg[512];
	char *json;
	int status, rc;

	tb_errno_status(err, &status, &code);
	if (err == -EISDIR)
		snprintf(msg, sizeof(msg), "%s is a directory", path);
	else
		snprintf(msg, sizeof(msg), "cannot read %s: %s", path, strerror(-err));
	if (status >= 500)
		code = "FILE_READ_FAILED";
	json = tb_error_json(s->c->req, status, code, msg);
	if (!json)
		return -ENOMEM;
	rc = part_headers(s, "error", path, "application/json", strlen(json));
	if (rc == 0)
		rc = sink_str(s, json);
	if (rc == 0)
		rc = sink_str(s, "\r\n");
	free(json);
	return rc;
}

/* One part for @path. Returns -EPIPE when the file failed mid-way (the response ends there). */
static int file_part(struct sink *s, const char *path)
{
	struct view_node node;
	char chunk[65536];
	struct stat st;
	uint64_t left;
	int fd, rc;

	rc = view_resolve(&s->c->view, path, 0, &node);
	if (rc == 0 && node.fd < 0)
		rc = -ENOENT;
	if (rc == 0 && S_ISDIR(node.st.st_mode))
		rc = -EISDIR;
	if (rc == 0 && !S_ISREG(node.st.st_mode))
		rc = -EINVAL;
	fd = rc == 0 ? view_node_open(&node, 0) : rc;
	view_node_release(&node);
	if (fd < 0)
		return error_part(s, path, fd);
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		close(fd);
		return error_part(s, path, rc);
	}
	rc = part_headers(s, "file", path, guess_type(path), (uint64_t)st.st_size);
	for (left = (uint64_t)st.st_size; rc == 0 && left > 0;) {
		ssize_t n = read(fd, chunk, left < sizeof(chunk) ? left : sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = -EPIPE; /* it shrank or failed: end without the closing boundary */
			break;
		}
		rc = sink_write(s, chunk, (size_t)n);
		left -= (uint64_t)n;
	}
	close(fd);
	if (rc == 0)
		rc = sink_str(s, "\r\n");
	return rc;
}

void tb_bulk_download(struct tb_call *c)
{
	struct sink s = {.c = c, .mem = BUF_INIT, .fd = -1};
	const cJSON *paths, *p;
	cJSON *body;
	int rc = 0;

	body = cJSON_ParseWithLength(c->req->body.data ? c->req->body.data : "", c->req->body.len);
	paths = cJSON_GetObjectItemCaseSensitive(body, "paths");
	if (!cJSON_IsObject(body) || !cJSON_IsArray(paths)) {
		tb_error(c, 400, "INVALID_REQUEST_BODY",
			 "the body must be a JSON object {\"paths\": [...]}");
		goto out;
	}
	cJSON_ArrayForEach(p, paths)
	{
		if (!cJSON_IsString(p) || !p->valuestring[0]) {
			tb_error(c, 400, "INVALID_REQUEST_BODY",
				 "paths must be an array of non-empty strings");
			goto out;
		}
	}
	cJSON_ArrayForEach(p, paths)
	{
		rc = file_part(&s, p->valuestring);
		if (rc < 0)
			break;
	}
	if (rc == 0)
		rc = sink_str(&s, "--" BULK_BOUNDARY "--\r\n");
	if (rc < 0 && rc != -EPIPE) {
		tb_errno(c, rc, "cannot build the response for", "bulk-download");
		goto out;
	}
	c->resp->status = 200;
	copy_str(c->resp->content_type, sizeof(c->resp->content_type),
		 "multipart/form-data; boundary=" BULK_BOUNDARY);
	if (s.fd >= 0) {
		c->resp->file_fd = s.fd;
		c->resp->file_off = 0;
		c->resp->file_len = (off_t)s.len;
		s.fd = -1;
	} else {
		buf_free(&c->resp->body);
		c->resp->body = s.mem;
		s.mem = (struct buf)BUF_INIT;
	}
out:
	if (s.fd >= 0)
		close(s.fd);
	buf_free(&s.mem);
	cJSON_Delete(body);
}

/* ---- folder ------------------------------------------------------------------------ */

/*
 * 201, with the directory's FileInfo (quaverd's own; Daytona sends no
 * body), which spares a client the GET /files/info it would make next.
 */
static void reply_folder(struct tb_call *c, const char *path)
{
	struct view_node node;
	cJSON *o = NULL;

	if (view_resolve(&c->view, path, 0, &node) == 0) {
		if (node.fd >= 0 && S_ISDIR(node.st.st_mode))
			o = tb_file_info(&c->view, &node, base_name(path), path);
		view_node_release(&node);
	}
	if (o)
		tb_json(c, 201, o);
	else
		tb_reply_empty(c, 201);
}

void tb_folder(struct tb_call *c)
{
	const char *path = tb_need(c, "path");
	const char *mode_s = http_param(c->req, "mode");
	struct view_node node;
	mode_t mode = 0755;

	if (!path)
		return;
	if (mode_s && mode_s[0] && !tb_parse_mode(mode_s, &mode)) {
		tb_error(c, 400, "BAD_REQUEST", "invalid mode %s (an octal number such as 0755)",
			 mode_s);
		return;
	}
	if (resolve(c, path, VIEW_MKDIRS, &node) < 0)
		return;
	if (node.fd >= 0) {
		if (S_ISDIR(node.st.st_mode))
			reply_folder(c, path);
		else
			tb_error(c, 400, "INVALID_FILE_PATH",
				 "cannot create folder %s: a file of that name exists", path);
	} else if (!view_parent_writable(&c->view, &node)) {
		tb_errno(c, -EROFS, "cannot create folder", path);
	} else if (mkdirat(node.parent_fd, node.name, mode & 0777) < 0 && errno != EEXIST) {
		tb_errno(c, -errno, "cannot create folder", path);
	} else {
		reply_folder(c, path);
	}
	view_node_release(&node);
}

/* ---- delete ----------------------------------------------------------------------- */

/*
 * rm -r of @name in @dirfd (its view path @vpath), never following a
 * symlink and never descending into a mount point: one found on the way is
 * left in place and the removal answers -EBUSY, as rm -r in a sandbox would.
 */
static int remove_tree(const struct view *v, int parent, const char *name, const char *vpath,
		       int depth)
{
	struct stat st;
	struct dirent *de;
	bool busy = false;
	DIR *dir;
	int fd, rc = 0;

	if (vpath && view_mount_at(v, vpath) > 0)
		return -EBUSY;
	if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISDIR(st.st_mode))
		return unlinkat(parent, name, 0) < 0 && errno != ENOENT ? -errno : 0;
	if (depth > TREE_MAX_DEPTH)
		return -ELOOP;
	fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	dir = fdopendir(fd);
	if (!dir) {
		rc = -errno;
		close(fd);
		return rc;
	}
	while (rc == 0 && (de = readdir(dir)) != NULL) {
		char *child;
		int r;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		child = vpath ? tb_join(vpath, de->d_name) : NULL;
		/* Past PATH_MAX no mount point can be below: stop checking. */
		if (child && strlen(child) >= PATH_MAX) {
			free(child);
			child = NULL;
		}
		r = remove_tree(v, dirfd(dir), de->d_name, child, depth + 1);
		free(child);
		if (r == -EBUSY)
			busy = true;
		else
			rc = r;
	}
	closedir(dir);
	if (rc == 0 && busy)
		rc = -EBUSY;
	if (rc == 0 && unlinkat(parent, name, AT_REMOVEDIR) < 0)
		rc = -errno;
	return rc;
}

void tb_delete(struct tb_call *c)
{
	const char *path = tb_need(c, "path");
	const char *recursive = http_param(c->req, "recursive");
	struct view_node node;
	int rc;

	if (!path || resolve(c, path, VIEW_NOFOLLOW, &node) < 0)
		return;
	if (node.fd < 0) {
		tb_errno(c, -ENOENT, "cannot delete", path);
	} else if (node.mount_root) {
		tb_errno(c, -EBUSY, "cannot delete", path);
	} else if (!view_parent_writable(&c->view, &node)) {
		tb_errno(c, -EROFS, "cannot delete", path);
	} else if (S_ISDIR(node.st.st_mode) && !(recursive && !strcmp(recursive, "true"))) {
		tb_error(c, 400, "BAD_REQUEST",
			 "cannot delete %s: it is a directory (use recursive=true)", path);
	} else {
		rc = remove_tree(&c->view, node.parent_fd, node.name, node.vpath, 0);
		if (rc == -EBUSY)
			tb_error(c, 409, "CONFLICT",
				 "cannot delete %s entirely: a volume is mounted inside it", path);
		else if (rc < 0)
			tb_errno(c, rc, "cannot delete", path);
		else
			tb_reply_empty(c, 204);
	}
	view_node_release(&node);
}

/* ---- move ------------------------------------------------------------------------ */

static int copy_data(int in, int out)
{
	for (;;) {
		ssize_t n = copy_file_range(in, NULL, out, NULL, 1 << 30, 0);

		if (n == 0)
			return 0;
		if (n > 0)
			continue;
		if (errno == EINTR)
			continue;
		if (errno != EXDEV && errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
			return -errno;
		break;
	}
	/* A plain read/write loop where the kernel cannot copy between these files. */
	for (;;) {
		char chunk[65536];
		ssize_t n = read(in, chunk, sizeof(chunk));

		if (n == 0)
			return 0;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(out, chunk + off, (size_t)(n - off));
			if (w < 0) {
				if (errno == EINTR)
					continue;
				return -errno;
			}
			off += w;
		}
	}
}

/* cp -a of @sname in @sdir to @dname in @ddir (which must not exist); symlinks as symlinks. */
static int copy_tree(int sdir, const char *sname, int ddir, const char *dname, int depth)
{
	struct stat st;
	int in, out, rc = 0;

	if (depth > TREE_MAX_DEPTH)
		return -ELOOP;
	if (fstatat(sdir, sname, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	if (S_ISLNK(st.st_mode)) {
		/* On the heap: this function recurses, PATH_MAX per level adds up. */
		char *target = malloc(PATH_MAX);
		ssize_t n = target ? readlinkat(sdir, sname, target, PATH_MAX - 1) : -1;

		rc = !target ? -ENOMEM : n < 0 ? -errno : 0;
		if (rc == 0) {
			target[n] = '\0';
			if (symlinkat(target, ddir, dname) < 0)
				rc = -errno;
		}
		free(target);
		return rc;
	}
	if (S_ISREG(st.st_mode)) {
		in = openat(sdir, sname, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
		if (in < 0)
			return -errno;
		out = openat(ddir, dname, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
			     st.st_mode & 0777);
		if (out < 0) {
			rc = -errno;
			close(in);
			return rc;
		}
		rc = copy_data(in, out);
		if (rc == 0 && fchmod(out, st.st_mode & 07777 & ~(S_ISUID | S_ISGID)) < 0)
			rc = -errno;
		if (rc == 0) {
			struct timespec times[2] = {st.st_atim, st.st_mtim};
			futimens(out, times);
		}
		close(in);
		close(out);
		return rc;
	}
	if (S_ISDIR(st.st_mode)) {
		struct dirent *de;
		DIR *dir;
		int d;

		if (mkdirat(ddir, dname, 0700) < 0)
			return -errno;
		d = openat(ddir, dname, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		in = openat(sdir, sname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (d < 0 || in < 0 || !(dir = fdopendir(in))) {
			rc = -errno;
			if (d >= 0)
				close(d);
			if (in >= 0)
				close(in);
			return rc;
		}
		while (rc == 0 && (de = readdir(dir)) != NULL) {
			if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
				rc = copy_tree(dirfd(dir), de->d_name, d, de->d_name, depth + 1);
		}
		closedir(dir);
		if (rc == 0 &&
		    fchmodat(ddir, dname, st.st_mode & 07777 & ~(S_ISUID | S_ISGID), 0) < 0)
			rc = -errno;
		close(d);
		return rc;
	}
	return 0; /* sockets, FIFOs, devices: not carried across */
}

void tb_move(struct tb_call *c)
{
	const char *from = tb_need(c, "source"), *to, *over = NULL;
	struct view_node src = {.fd = -1, .parent_fd = -1}, dst = {.fd = -1, .parent_fd = -1};
	bool replace;
	int rc;

	if (!from || !(to = tb_need(c, "destination")))
		return;
	if (resolve(c, from, VIEW_NOFOLLOW, &src) < 0)
		return;
	if (src.fd < 0) {
		tb_errno(c, -ENOENT, "cannot move", from);
		goto out;
	}
	if (src.mount_root) {
		tb_errno(c, -EBUSY, "cannot move", from);
		goto out;
	}
	if (!view_parent_writable(&c->view, &src)) {
		tb_errno(c, -EROFS, "cannot move", from);
		goto out;
	}
	rc = view_resolve(&c->view, to, VIEW_NOFOLLOW, &dst);
	if (rc < 0) {
		tb_errno(c, rc, "cannot move to", to);
		goto out;
	}
	/*
	 * `overwrite=true` (quaverd's own; Daytona ignores it and answers 409):
	 * a file or link replaces an existing file by one rename, atomically,
	 * as rename(2) does; a directory on either side still conflicts.
	 */
	replace = dst.fd >= 0 && !S_ISDIR(dst.st.st_mode) && !S_ISDIR(src.st.st_mode) &&
		  !dst.mount_root && (over = http_param(c->req, "overwrite")) && !strcmp(over, "true");
	if (dst.fd >= 0 && !replace) {
		tb_error(c, 409, "CONFLICT", "cannot move %s to %s: the destination exists", from,
			 to);
		goto out;
	}
	if (!view_parent_writable(&c->view, &dst)) {
		tb_errno(c, -EROFS, "cannot move to", to);
		goto out;
	}
	rc = renameat2(src.parent_fd, src.name, dst.parent_fd, dst.name,
		       replace ? 0 : RENAME_NOREPLACE);
	if (rc < 0 && errno == EXDEV && replace) {
		/* Across filesystems a copy cannot replace atomically: as Daytona, 409. */
		rc = -EEXIST;
	} else if (rc < 0 && errno == EXDEV) {
		/* Another filesystem: copy, then delete, as mv does. */
		rc = copy_tree(src.parent_fd, src.name, dst.parent_fd, dst.name, 0);
		if (rc == 0)
			rc = remove_tree(&c->view, src.parent_fd, src.name, src.vpath, 0);
		else
			remove_tree(&c->view, dst.parent_fd, dst.name, NULL, 0);
	} else if (rc < 0) {
		rc = -errno;
	}
	if (rc == -EEXIST || rc == -ENOTEMPTY)
		tb_error(c, 409, "CONFLICT", "cannot move %s to %s: the destination exists", from,
			 to);
	else if (rc == -EINVAL)
		tb_error(c, 400, "INVALID_FILE_PATH", "cannot move %s into itself (%s)", from, to);
	else if (rc < 0)
		tb_errno(c, rc, "cannot move", from);
	else
		tb_reply_empty(c, 200);
out:
	view_node_release(&src);
	view_node_release(&dst);
}

/* ---- permissions ------------------------------------------------------------------ */

/* The sandbox has one user: daytona (1000), who owns everything quaverd writes. */
static bool is_sandbox_user(const char *who)
{
	return !who || !who[0] || !strcmp(who, "daytona") || !strcmp(who, "1000");
}

void tb_permissions(struct tb_call *c)
{
	const char *path = tb_need(c, "path");
	const char *mode_s = http_param(c->req, "mode");
	const char *owner = http_param(c->req, "owner");
	const char *group = http_param(c->req, "group");
	struct view_node node;
	char proc[64];
	mode_t mode = 0;

	if (!path)
		return;
	if (mode_s && mode_s[0] && !tb_parse_mode(mode_s, &mode)) {
		tb_error(c, 400, "BAD_REQUEST", "invalid mode %s (an octal number such as 0644)",
			 mode_s);
		return;
	}
	if (resolve(c, path, 0, &node) < 0)
		return;
	if (node.fd < 0) {
		tb_errno(c, -ENOENT, "cannot change permissions of", path);
	} else if (!view_node_writable(&c->view, &node)) {
		tb_errno(c, -EROFS, "cannot change permissions of", path);
	} else if (!is_sandbox_user(owner) || !is_sandbox_user(group)) {
		tb_error(c, 403, "FILE_ACCESS_DENIED",
			 "cannot change the owner of %s to %s:%s: quaverd sandboxes have one "
			 "user, daytona (1000)",
			 path, owner ? owner : "", group ? group : "");
	} else if (mode_s && mode_s[0]) {
		/*
		 * chmod the inode the resolver opened, through its O_PATH fd: a
		 * name could be swapped for a symlink between resolve and chmod.
		 * Like Go's os.Chmod, only the permission bits are applied.
		 */
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", node.fd);
		if (chmod(proc, mode & 0777) < 0)
			tb_errno(c, -errno, "cannot change permissions of", path);
		else
			tb_reply_empty(c, 200);
	} else {
		tb_reply_empty(c, 200);
	}
	view_node_release(&node);
}
