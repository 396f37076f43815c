/*
 * Toolbox uploads (daytona-api.md section 6): /files/upload (multipart),
 * /files/upload-v2 (multipart or a raw body) and /files/bulk-upload.
 *
 * Every upload is atomic: the data goes to an unnamed O_TMPFILE (or, where
 * the filesystem has none, a hidden ".quaverd-upload-*" name) in the
 * target's directory and replaces the target by one rename. A reader sees
 * the old file or the new one, never a half; a quaverd killed mid-way
 * leaves the old content. Nothing is fsync'ed: the rename is what makes an
 * upload all-or-nothing, and a host crash is not a case an upload answers
 * for (Daytona's toolbox, os.Create and io.Copy, does not sync either; ext4
 * writes a file replaced by rename before the rename). Two fsyncs per upload
 * cost more than the whole request. A raw body the HTTP layer spooled to a
 * file is renamed into place without a copy when it is on the same
 * filesystem. upload-v2 answers with the new file's FileInfo fields, so a
 * client needs no GET /files/info after it, and takes an optional `mode`
 * (octal) for the file's permission bits. Large multipart bodies are parsed by streaming over the
 * spooled file (toolbox_multipart.h), so memory does not grow with size.
 */
#define QUAVERD_TOOLBOX_INTERNAL
#include "toolbox.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "log.h"
#include "toolbox_multipart.h"
#include "util.h"

#define BULK_MAX_FILES 10000

/* ---- the atomic writer ----------------------------------------------------------- */

/*
 * Resolves @path for writing (parents created, a final symlink followed
 * inside the view) and opens the data file. 0, or -errno with @why set.
 */
int tb_writer_open_rc(const struct view *v, const char *path, struct tb_writer *w, const char **why)
{
	struct view_node node;
	int rc;

	memset(w, 0, sizeof(*w));
	w->dirfd = w->fd = -1;
	*why = "cannot write";
	rc = view_resolve(v, path, VIEW_MKDIRS, &node);
	if (rc < 0)
		return rc;
	if (node.fd >= 0 && S_ISDIR(node.st.st_mode)) {
		view_node_release(&node);
		*why = "cannot write over a directory:";
		return -EISDIR;
	}
	if (node.parent_fd < 0 || !view_parent_writable(v, &node)) {
		view_node_release(&node);
		return -EROFS;
	}
	/* An existing file keeps its permissions, as os.Create over it would. */
	w->mode = node.fd >= 0 && S_ISREG(node.st.st_mode) ? node.st.st_mode & 0777 : 0644;
	w->dirfd = node.parent_fd;
	node.parent_fd = -1;
	copy_str(w->name, sizeof(w->name), node.name);
	view_node_release(&node);

	w->fd = openat(w->dirfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
	if (w->fd >= 0) {
		w->unnamed = true;
		return 0;
	}
	if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL) {
		rc = -errno;
		tb_writer_abort(w);
		return rc;
	}
	/* No O_TMPFILE here: a hidden name, which listings skip. */
	for (int tries = 0; tries < 8; tries++) {
		char hex[17];

		random_hex(hex, 8);
		snprintf(w->tmp_name, sizeof(w->tmp_name), "%s%s", TB_UPLOAD_PREFIX, hex);
		w->fd = openat(w->dirfd, w->tmp_name,
			       O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (w->fd >= 0 || errno != EEXIST)
			break;
	}
	if (w->fd < 0) {
		rc = -errno;
		w->tmp_name[0] = '\0';
		tb_writer_abort(w);
		return rc;
	}
	return 0;
}

bool tb_writer_open(struct tb_call *c, const char *path, struct tb_writer *w)
{
	const char *why;
	int rc = tb_writer_open_rc(&c->view, path, w, &why);

	if (rc < 0)
		tb_errno(c, rc, why, path);
	return rc == 0;
}

int tb_writer_write(struct tb_writer *w, const void *data, size_t len)
{
	const char *p = data;

	while (len > 0) {
		ssize_t n = write(w->fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
		w->bytes += (uint64_t)n;
	}
	return 0;
}

void tb_writer_abort(struct tb_writer *w)
{
	if (w->fd >= 0)
		close(w->fd);
	if (w->tmp_name[0] && w->dirfd >= 0)
		unlinkat(w->dirfd, w->tmp_name, 0);
	if (w->dirfd >= 0)
		close(w->dirfd);
	w->fd = w->dirfd = -1;
	w->tmp_name[0] = '\0';
}

/* Gives the unnamed file a hidden name, so that one rename can put it in place. */
static int link_unnamed(struct tb_writer *w)
{
	char proc[64];

	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", w->fd);
	for (int tries = 0; tries < 8; tries++) {
		char hex[17];

		random_hex(hex, 8);
		snprintf(w->tmp_name, sizeof(w->tmp_name), "%s%s", TB_UPLOAD_PREFIX, hex);
		if (linkat(AT_FDCWD, proc, w->dirfd, w->tmp_name, AT_SYMLINK_FOLLOW) == 0)
			return 0;
		if (errno != EEXIST)
			break;
	}
	w->tmp_name[0] = '\0';
	return -errno;
}

int tb_writer_commit(struct tb_writer *w)
{
	int rc = 0;

	/* No fsync: the rename makes it all-or-nothing (the comment at the top). */
	if (fchmod(w->fd, w->mode) < 0)
		rc = -errno;
	if (rc == 0 && w->unnamed)
		rc = link_unnamed(w);
	if (rc == 0 && renameat(w->dirfd, w->tmp_name, w->dirfd, w->name) < 0)
		rc = -errno;
	if (rc == 0)
		w->tmp_name[0] = '\0';
	tb_writer_abort(w);
	return rc;
}

/*
 * Puts the spooled body file @spool in place of the writer's target by
 * rename (no copy). -EXDEV when it lives on another filesystem.
 */
static int writer_adopt(struct tb_writer *w, const char *spool, uint64_t len)
{
	int fd = open(spool, O_RDONLY | O_NOFOLLOW | O_CLOEXEC), rc = 0;
	struct stat st;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != len)
		rc = -EIO;
	if (rc == 0 && fchmod(fd, w->mode) < 0)
		rc = -errno;
	close(fd);
	if (rc == 0 && renameat(AT_FDCWD, spool, w->dirfd, w->name) < 0)
		rc = -errno;
	if (rc == 0)
		w->bytes = len;
	return rc;
}

/* ---- the body, wherever it is ------------------------------------------------------- */

static int parse_body(struct tb_call *c, const char *boundary, const struct mp_callbacks *cb,
		      void *ctx)
{
	int fd, rc;

	if (!c->req->body_file)
		return mp_parse_mem(boundary, c->req->body.data ? c->req->body.data : "",
				    c->req->body.len, cb, ctx);
	fd = open(c->req->body_file, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	rc = mp_parse_fd(boundary, fd, cb, ctx);
	close(fd);
	return rc;
}

/* ---- upload, upload-v2 ---------------------------------------------------------------- */

/* upload-v2's optional `mode`: the permission bits of the file written. */
static bool requested_mode(struct tb_call *c, struct tb_writer *w)
{
	const char *mode_s = http_param(c->req, "mode");
	mode_t mode;

	if (!mode_s || !mode_s[0])
		return true;
	if (!tb_parse_mode(mode_s, &mode)) {
		tb_writer_abort(w);
		tb_error(c, 400, "BAD_REQUEST", "invalid mode %s (an octal number such as 0644)",
			 mode_s);
		return false;
	}
	w->mode = mode & 0777;
	return true;
}

struct single {
	struct tb_call *c;
	const char *path;
	struct tb_writer w;
	bool in_file, done, replied;
	int err;
};

static int single_begin(void *ctx, const struct mp_part *part)
{
	struct single *s = ctx;

	s->in_file = false;
	if (strcmp(part->name, "file") || s->done)
		return 0;
	if (!tb_writer_open(s->c, s->path, &s->w) || !requested_mode(s->c, &s->w)) {
		s->w.fd = s->w.dirfd = -1;
		s->replied = true;
		return -ECANCELED;
	}
	s->in_file = true;
	return 0;
}

static int single_data(void *ctx, const void *data, size_t len)
{
	struct single *s = ctx;

	return s->in_file ? tb_writer_write(&s->w, data, len) : 0;
}

static int single_end(void *ctx)
{
	struct single *s = ctx;
	int rc = 0;

	if (s->in_file) {
		rc = tb_writer_commit(&s->w);
		s->in_file = false;
		s->done = rc == 0;
	}
	return rc;
}

/*
 * upload-v2's answer: Daytona's {name, path, type}, plus the FileInfo
 * fields of the file just written (size, mode, permissions, modifiedAt...),
 * which spare a client the GET /files/info it would make next.
 */
static void reply_uploaded(struct tb_call *c, const char *path, uint64_t bytes, bool v2)
{
	const char *slash = strrchr(path, '/');
	const char *name = slash && slash[1] ? slash + 1 : path;
	struct view_node node;
	cJSON *o = NULL;

	if (!v2) {
		tb_reply_empty(c, 200);
		return;
	}
	if (view_resolve(&c->view, path, 0, &node) == 0) {
		if (node.fd >= 0 && S_ISREG(node.st.st_mode))
			o = tb_file_info(&c->view, &node, name, path);
		view_node_release(&node);
	}
	if (!o) {
		/* Replaced or removed meanwhile: what was written is all there is to say. */
		o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "name", name);
		cJSON_AddStringToObject(o, "path", path);
		cJSON_AddNumberToObject(o, "size", (double)bytes);
	}
	cJSON_AddStringToObject(o, "type", "file");
	tb_json(c, 200, o);
}


static void upload_raw(struct tb_call *c, const char *path)
{
	struct tb_writer w;
	int rc;

	if (!tb_writer_open(c, path, &w) || !requested_mode(c, &w))
		return;
	if (c->req->body_file) {
		rc = writer_adopt(&w, c->req->body_file, c->req->body_len);
		if (rc == 0) {
			uint64_t bytes = w.bytes;
			tb_writer_abort(&w); /* the unnamed file was never used */
			reply_uploaded(c, path, bytes, true);
			return;
		}
		if (rc != -EXDEV) {
			tb_writer_abort(&w);
			tb_errno(c, rc, "cannot write", path);
			return;
		}
		/* Another filesystem (a volume elsewhere): copy it. */
		int fd = open(c->req->body_file, O_RDONLY | O_CLOEXEC);
		char chunk[65536];
		ssize_t n = 0;

		rc = fd < 0 ? -errno : 0;
		while (rc == 0 && (n = read(fd, chunk, sizeof(chunk))) != 0) {
			if (n < 0)
				rc = errno == EINTR ? 0 : -errno;
			else
				rc = tb_writer_write(&w, chunk, (size_t)n);
		}
		if (fd >= 0)
			close(fd);
	} else {
		rc = tb_writer_write(&w, c->req->body.data ? c->req->body.data : "",
				     c->req->body.len);
	}
	if (rc < 0) {
		tb_writer_abort(&w);
		tb_errno(c, rc, "cannot write", path);
		return;
	}
	rc = tb_writer_commit(&w);
	if (rc < 0)
		tb_errno(c, rc, "cannot write", path);
	else
		reply_uploaded(c, path, c->req->body_len, true);
}

void tb_upload(struct tb_call *c, bool v2)
{
	const char *path = tb_need(c, "path");
	const char *ctype = http_header(c->req, "content-type");
	struct single s = {.c = c, .path = path};
	char boundary[MP_BOUNDARY_MAX + 1];
	static const struct mp_callbacks cb = {single_begin, single_data, single_end};
	int rc;

	if (!path)
		return;
	s.w.fd = s.w.dirfd = -1;
	if (mp_boundary(ctype, boundary, sizeof(boundary)) < 0) {
		if (v2) {
			upload_raw(c, path);
			return;
		}
		tb_error(c, 400, "BAD_REQUEST",
			 "the body must be multipart/form-data with a boundary and a file field");
		return;
	}
	rc = parse_body(c, boundary, &cb, &s);
	if (s.in_file)
		tb_writer_abort(&s.w);
	if (s.replied)
		return;
	if (rc == -EBADMSG)
		tb_error(c, 400, "BAD_REQUEST", "malformed multipart body");
	else if (rc < 0)
		tb_errno(c, rc, "cannot write", path);
	else if (!s.done)
		tb_error(c, 400, "BAD_REQUEST", "the multipart body has no file field");
	else
		reply_uploaded(c, path, s.w.bytes, v2);
}

/* ---- bulk-upload ----------------------------------------------------------------- */

struct bulk_item {
	char *path;
	bool seen; /* its file part came (written, or an error was reported) */
};

struct bulk {
	struct tb_call *c;
	struct bulk_item *items;
	size_t nitems;
	/* the part being read */
	enum { PART_SKIP, PART_PATH, PART_FILE } kind;
	size_t index;
	struct buf text;
	struct tb_writer w;
	bool writing;
	cJSON *files, *errors;
};

/* "files[12].path" -> 12, PART_PATH. */
static bool parse_field(const char *name, size_t *index, int *kind)
{
	char *end;
	unsigned long i;

	if (strncmp(name, "files[", 6) != 0)
		return false;
	i = strtoul(name + 6, &end, 10);
	if (end == name + 6 || i >= BULK_MAX_FILES)
		return false;
	if (!strcmp(end, "].path"))
		*kind = PART_PATH;
	else if (!strcmp(end, "].file"))
		*kind = PART_FILE;
	else
		return false;
	*index = i;
	return true;
}

static void bulk_error(struct bulk *b, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void bulk_error(struct bulk *b, const char *path, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	cJSON *o = cJSON_CreateObject();

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	cJSON_AddStringToObject(o, "path", path);
	cJSON_AddStringToObject(o, "error", msg);
	cJSON_AddItemToArray(b->errors, o);
}

static int bulk_begin(void *ctx, const struct mp_part *part)
{
	struct bulk *b = ctx;
	const char *why;
	int kind = PART_SKIP, rc;

	b->kind = PART_SKIP;
	if (!parse_field(part->name, &b->index, &kind))
		return 0;
	if (b->index >= b->nitems) {
		struct bulk_item *grown = realloc(b->items, (b->index + 1) * sizeof(*grown));
		if (!grown)
			return -ENOMEM;
		memset(grown + b->nitems, 0, (b->index + 1 - b->nitems) * sizeof(*grown));
		b->items = grown;
		b->nitems = b->index + 1;
	}
	b->kind = kind;
	buf_reset(&b->text);
	if (kind == PART_PATH)
		return 0;
	b->items[b->index].seen = true;
	if (!b->items[b->index].path) {
		bulk_error(b, part->filename,
			   "files[%zu].file came without files[%zu].path before it", b->index,
			   b->index);
		b->kind = PART_SKIP;
		return 0;
	}
	rc = tb_writer_open_rc(&b->c->view, b->items[b->index].path, &b->w, &why);
	if (rc < 0) {
		bulk_error(b, b->items[b->index].path, "%s %s: %s", why, b->items[b->index].path,
			   strerror(-rc));
		b->kind = PART_SKIP;
		return 0;
	}
	b->writing = true;
	return 0;
}

static int bulk_data(void *ctx, const void *data, size_t len)
{
	struct bulk *b = ctx;
	int rc;

	if (b->kind == PART_PATH) {
		if (b->text.len + len > PATH_MAX)
			return -ENAMETOOLONG;
		return buf_append(&b->text, data, len);
	}
	if (b->kind == PART_FILE && b->writing) {
		rc = tb_writer_write(&b->w, data, len);
		if (rc < 0) {
			bulk_error(b, b->items[b->index].path, "cannot write %s: %s",
				   b->items[b->index].path, strerror(-rc));
			tb_writer_abort(&b->w);
			b->writing = false;
		}
	}
	return 0;
}

static int bulk_end(void *ctx)
{
	struct bulk *b = ctx;
	struct bulk_item *it = b->kind == PART_SKIP ? NULL : &b->items[b->index];
	int rc;

	if (b->kind == PART_PATH) {
		free(it->path);
		it->path = b->text.len && !memchr(b->text.data, '\0', b->text.len)
			       ? buf_steal(&b->text)
			       : NULL;
		if (!it->path)
			bulk_error(b, "", "files[%zu].path is empty", b->index);
	} else if (b->kind == PART_FILE && b->writing) {
		uint64_t bytes = b->w.bytes;
		b->writing = false;
		rc = tb_writer_commit(&b->w);
		if (rc < 0) {
			bulk_error(b, it->path, "cannot write %s: %s", it->path, strerror(-rc));
		} else {
			cJSON *o = cJSON_CreateObject();
			cJSON_AddStringToObject(o, "path", it->path);
			cJSON_AddNumberToObject(o, "bytes", (double)bytes);
			cJSON_AddItemToArray(b->files, o);
		}
	}
	b->kind = PART_SKIP;
	return 0;
}

void tb_bulk_upload(struct tb_call *c)
{
	static const struct mp_callbacks cb = {bulk_begin, bulk_data, bulk_end};
	struct bulk b = {.c = c, .text = BUF_INIT};
	char boundary[MP_BOUNDARY_MAX + 1];
	cJSON *o;
	int rc;

	b.w.fd = b.w.dirfd = -1;
	if (mp_boundary(http_header(c->req, "content-type"), boundary, sizeof(boundary)) < 0) {
		tb_error(c, 400, "BAD_REQUEST",
			 "the body must be multipart/form-data with files[i].path and "
			 "files[i].file fields");
		return;
	}
	b.files = cJSON_CreateArray();
	b.errors = cJSON_CreateArray();
	rc = parse_body(c, boundary, &cb, &b);
	if (b.writing)
		tb_writer_abort(&b.w);
	if (rc == -EBADMSG) {
		tb_error(c, 400, "BAD_REQUEST", "malformed multipart body");
	} else if (rc < 0) {
		tb_errno(c, rc, "cannot read", "the multipart body");
	} else {
		for (size_t i = 0; i < b.nitems; i++)
			if (b.items[i].path && !b.items[i].seen)
				bulk_error(&b, b.items[i].path, "files[%zu].file is missing", i);
		o = cJSON_CreateObject();
		if (cJSON_GetArraySize(b.errors) > 0) {
			cJSON_AddItemToObject(o, "errors", b.errors);
			b.errors = NULL;
		}
		cJSON_AddItemToObject(o, "files", b.files);
		b.files = NULL;
		tb_json(c, cJSON_GetObjectItem(o, "errors") ? 400 : 200, o);
	}
	for (size_t i = 0; i < b.nitems; i++)
		free(b.items[i].path);
	free(b.items);
	buf_free(&b.text);
	cJSON_Delete(b.files);
	cJSON_Delete(b.errors);
}
