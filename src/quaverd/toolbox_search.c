/*
 * Toolbox search routes (daytona-api.md section 6): /files/find (a literal
 * substring in file contents, line by line), /files/search (a glob on
 * names) and /files/replace (a literal replacement in given files).
 *
 * The walks go through directory fds, never follow a symlink (as Go's
 * filepath.Walk does not), enter volumes at their mount points and stay in
 * the view; their results are bounded so a huge tree cannot exhaust memory.
 */
#define QUAVERD_TOOLBOX_INTERNAL
#include "toolbox.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

#define WALK_MAX_DEPTH 256
#define FIND_MAX_MATCHES 100000
#define SEARCH_MAX_RESULTS 100000
/* Go's bufio.Scanner gives up on longer lines; we cut them there instead. */
#define FIND_MAX_LINE (64 * 1024)
#define PATTERN_MAX 4096

struct walker {
	struct tb_call *c;
	/* Called for every entry below the start; @fd is open for reading when it is a file. */
	int (*visit)(struct walker *w, const char *shown, const char *name, const struct stat *st,
		     int fd);
	struct buf out;
	size_t results;
	bool full;
};

/* Opens the child @name of @dirfd (view path @vpath) for reading, entering a mount at its point. */
static int open_child(const struct view *v, int dirfd, const char *name, const char *vpath,
		      struct stat *st)
{
	int m = view_mount_at(v, vpath), fd;

	if (m > 0)
		fd = openat(v->mounts[m].fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	else
		fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, st) < 0 || !(S_ISREG(st->st_mode) || S_ISDIR(st->st_mode))) {
		close(fd);
		return -EINVAL;
	}
	return fd;
}

static int walk_dir(struct walker *w, int dfd, const char *vpath, const char *shown, int depth)
{
	const struct view *v = &w->c->view;
	struct dirent *de;
	DIR *dir;
	int rc = 0;

	if (depth > WALK_MAX_DEPTH) {
		close(dfd);
		return 0;
	}
	dir = fdopendir(dfd);
	if (!dir) {
		close(dfd);
		return 0;
	}
	while (rc == 0 && !w->full && (de = readdir(dir)) != NULL) {
		char *child_v, *child_s;
		struct stat st;
		int fd;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
		    !strncmp(de->d_name, TB_UPLOAD_PREFIX, strlen(TB_UPLOAD_PREFIX)))
			continue;
		child_v = tb_join(vpath, de->d_name);
		child_s = tb_join(shown, de->d_name);
		if (!child_v || !child_s) {
			free(child_v);
			free(child_s);
			rc = -ENOMEM;
			break;
		}
		if (strlen(child_v) >= PATH_MAX) {
			free(child_v);
			free(child_s);
			continue;
		}
		if (view_mount_at(v, child_v) <= 0 &&
		    fstatat(dirfd(dir), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
			/* A symlink, FIFO, socket: its name counts, it is not opened. */
			rc = w->visit(w, child_s, de->d_name, &st, -1);
		} else if ((fd = open_child(v, dirfd(dir), de->d_name, child_v, &st)) >= 0) {
			rc = w->visit(w, child_s, de->d_name, &st, S_ISREG(st.st_mode) ? fd : -1);
			if (rc == 0 && S_ISDIR(st.st_mode))
				rc = walk_dir(w, fd, child_v, child_s, depth + 1);
			else
				close(fd);
		}
		free(child_v);
		free(child_s);
	}
	closedir(dir);
	return rc;
}

/* Resolves the start (following links, as the walk's root is stat'ed) and walks below it. */
static void walk_from(struct tb_call *c, struct walker *w, const char *path, bool visit_root)
{
	struct view_node node;
	int rc, fd;

	rc = view_resolve(&c->view, path, 0, &node);
	if (rc == 0 && node.fd < 0)
		rc = -ENOENT;
	if (rc < 0) {
		tb_errno(c, rc, "cannot search", path);
		return;
	}
	fd = view_node_open(&node, 0);
	if (fd < 0) {
		tb_errno(c, fd, "cannot search", path);
		view_node_release(&node);
		return;
	}
	rc = 0;
	if (visit_root || !S_ISDIR(node.st.st_mode)) {
		const char *slash = strrchr(path, '/');
		rc = w->visit(w, path, slash && slash[1] ? slash + 1 : path, &node.st,
			      S_ISREG(node.st.st_mode) ? fd : -1);
	}
	if (rc == 0 && S_ISDIR(node.st.st_mode))
		rc = walk_dir(w, fd, node.vpath, path, 0);
	else
		close(fd);
	view_node_release(&node);
	if (rc < 0)
		tb_errno(c, rc, "cannot search", path);
}

/* ---- find ----------------------------------------------------------------------------- */

struct finder {
	struct walker w; /* first: the visit callback casts back */
	const char *pattern;
	size_t plen;
};

static int add_match(struct walker *w, const char *file, long line, const char *text, size_t len)
{
	int rc = 0;

	if (w->results++ >= FIND_MAX_MATCHES) {
		w->full = true;
		return 0;
	}
	if (w->out.len > 1)
		rc |= buf_append_str(&w->out, ",");
	rc |= buf_append_str(&w->out, "{\"file\":");
	rc |= tb_json_string(&w->out, file, strlen(file));
	rc |= buf_printf(&w->out, ",\"line\":%ld,\"content\":", line);
	rc |= tb_json_string(&w->out, text, len);
	rc |= buf_append_str(&w->out, "}");
	return rc ? -ENOMEM : 0;
}

static int find_visit(struct walker *w, const char *shown, const char *name, const struct stat *st,
		      int fd)
{
	struct finder *f = (struct finder *)w;
	char *line, chunk[65536];
	size_t len = 0;
	long lineno = 1;
	bool cut = false;
	int rc = 0;

	(void)name;
	(void)st;
	if (fd < 0)
		return 0;
	line = malloc(FIND_MAX_LINE);
	if (!line)
		return -ENOMEM;
	for (;;) {
		ssize_t n = read(fd, chunk, sizeof(chunk));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break; /* an unreadable file is skipped, as the daemon does */
		for (ssize_t i = 0; i < n && rc == 0 && !w->full; i++) {
			if (chunk[i] != '\n') {
				if (len < FIND_MAX_LINE)
					line[len++] = chunk[i];
				else
					cut = true;
				continue;
			}
			if (len > 0 && line[len - 1] == '\r')
				len--;
			if (memmem(line, len, f->pattern, f->plen))
				rc = add_match(w, shown, lineno, line, len);
			lineno++;
			len = 0;
			cut = false;
		}
		if (rc < 0 || w->full)
			break;
	}
	(void)cut;
	if (rc == 0 && !w->full && len > 0) {
		if (line[len - 1] == '\r')
			len--;
		if (memmem(line, len, f->pattern, f->plen))
			rc = add_match(w, shown, lineno, line, len);
	}
	free(line);
	return rc;
}

static bool pattern_param(struct tb_call *c, const char **out)
{
	const char *p = tb_need(c, "pattern");

	if (!p)
		return false;
	if (strlen(p) > PATTERN_MAX) {
		tb_error(c, 400, "BAD_REQUEST", "the pattern is longer than %d bytes", PATTERN_MAX);
		return false;
	}
	*out = p;
	return true;
}

static void reply_walk(struct tb_call *c, struct buf *out)
{
	c->resp->status = 200;
	copy_str(c->resp->content_type, sizeof(c->resp->content_type), "application/json");
	buf_free(&c->resp->body);
	c->resp->body = *out;
	*out = (struct buf)BUF_INIT;
}

void tb_find(struct tb_call *c)
{
	struct finder f = {.w = {.c = c, .visit = find_visit, .out = BUF_INIT}};
	const char *path = tb_need(c, "path");

	if (!path || !pattern_param(c, &f.pattern))
		return;
	f.plen = strlen(f.pattern);
	buf_append_str(&f.w.out, "[");
	walk_from(c, &f.w, path, false);
	if (!c->resp->status) {
		buf_append_str(&f.w.out, "]");
		reply_walk(c, &f.w.out);
	}
	buf_free(&f.w.out);
}

/* ---- search --------------------------------------------------------------------------- */

struct searcher {
	struct walker w;
	const char *pattern;
};

static int search_visit(struct walker *w, const char *shown, const char *name,
			const struct stat *st, int fd)
{
	struct searcher *s = (struct searcher *)w;
	int rc = 0;

	(void)st;
	(void)fd;
	if (fnmatch(s->pattern, name, 0) != 0)
		return 0;
	if (w->results++ >= SEARCH_MAX_RESULTS) {
		w->full = true;
		return 0;
	}
	if (w->out.len > 10)
		rc |= buf_append_str(&w->out, ",");
	rc |= tb_json_string(&w->out, shown, strlen(shown));
	return rc ? -ENOMEM : 0;
}

void tb_search(struct tb_call *c)
{
	struct searcher s = {.w = {.c = c, .visit = search_visit, .out = BUF_INIT}};
	const char *path = tb_need(c, "path");

	if (!path || !pattern_param(c, &s.pattern))
		return;
	buf_append_str(&s.w.out, "{\"files\":[");
	walk_from(c, &s.w, path, true);
	if (!c->resp->status) {
		buf_append_str(&s.w.out, "]}");
		reply_walk(c, &s.w.out);
	}
	buf_free(&s.w.out);
}

/* ---- replace -------------------------------------------------------------------------- */

/*
 * Streams @in into the writer with every @pat replaced by @rep. Returns the
 * number of replacements or -errno.
 */
static long replace_stream(int in, struct tb_writer *w, const char *pat, size_t plen,
			   const char *rep, size_t rlen)
{
	size_t cap = 65536 + plen, len = 0;
	char *buf = malloc(cap);
	long count = 0;
	int rc = 0;

	if (!buf)
		return -ENOMEM;
	for (;;) {
		ssize_t n = read(in, buf + len, cap - len);
		size_t pos = 0, keep;
		bool at_end;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			break;
		}
		at_end = n == 0;
		len += (size_t)n;
		for (;;) {
			char *hit = memmem(buf + pos, len - pos, pat, plen);
			if (!hit)
				break;
			rc = tb_writer_write(w, buf + pos, (size_t)(hit - buf) - pos);
			if (rc == 0)
				rc = tb_writer_write(w, rep, rlen);
			if (rc < 0)
				break;
			count++;
			pos = (size_t)(hit - buf) + plen;
		}
		if (rc < 0)
			break;
		/* The tail may hold the start of a match that the next read completes. */
		keep = at_end ? 0 : (len - pos < plen - 1 ? len - pos : plen - 1);
		rc = tb_writer_write(w, buf + pos, len - pos - keep);
		if (rc < 0 || at_end)
			break;
		memmove(buf, buf + len - keep, keep);
		len = keep;
	}
	free(buf);
	return rc < 0 ? rc : count;
}

static void replace_one(struct tb_call *c, const char *file, const char *pat, const char *rep,
			cJSON *results)
{
	cJSON *o = cJSON_CreateObject();
	struct view_node node;
	struct tb_writer w;
	const char *why = "cannot replace in";
	long count = 0;
	int rc, fd = -1;

	cJSON_AddStringToObject(o, "file", file);
	rc = view_resolve(&c->view, file, 0, &node);
	if (rc == 0 && node.fd < 0)
		rc = -ENOENT;
	if (rc == 0 && !S_ISREG(node.st.st_mode))
		rc = S_ISDIR(node.st.st_mode) ? -EISDIR : -EINVAL;
	if (rc == 0) {
		fd = view_node_open(&node, 0);
		rc = fd < 0 ? fd : 0;
	}
	view_node_release(&node);
	if (rc == 0)
		rc = tb_writer_open_rc(&c->view, file, &w, &why);
	if (rc == 0) {
		count = replace_stream(fd, &w, pat, strlen(pat), rep, strlen(rep));
		if (count > 0) {
			rc = tb_writer_commit(&w);
		} else {
			rc = count < 0 ? (int)count : 0;
			tb_writer_abort(&w); /* nothing to change: the file keeps its mtime */
		}
	}
	if (fd >= 0)
		close(fd);
	cJSON_AddBoolToObject(o, "success", rc == 0);
	if (rc < 0) {
		char msg[512];
		snprintf(msg, sizeof(msg), "%s %s: %s", why, file, strerror(-rc));
		cJSON_AddStringToObject(o, "error", msg);
	}
	cJSON_AddItemToArray(results, o);
}

void tb_replace(struct tb_call *c)
{
	const cJSON *files, *pat, *rep, *f;
	cJSON *body, *results;

	body = cJSON_ParseWithLength(c->req->body.data ? c->req->body.data : "", c->req->body.len);
	files = cJSON_GetObjectItemCaseSensitive(body, "files");
	pat = cJSON_GetObjectItemCaseSensitive(body, "pattern");
	rep = cJSON_GetObjectItemCaseSensitive(body, "newValue");
	if (!cJSON_IsObject(body) || !cJSON_IsArray(files) || !cJSON_IsString(pat) ||
	    !cJSON_IsString(rep)) {
		tb_error(c, 400, "INVALID_REQUEST_BODY",
			 "the body must be {\"files\": [...], \"pattern\": \"...\", "
			 "\"newValue\": \"...\"}");
		goto out;
	}
	if (!pat->valuestring[0] || strlen(pat->valuestring) > PATTERN_MAX) {
		tb_error(c, 400, "INVALID_REQUEST_BODY",
			 "pattern must be a non-empty string of at most %d bytes", PATTERN_MAX);
		goto out;
	}
	cJSON_ArrayForEach(f, files)
	{
		if (!cJSON_IsString(f) || !f->valuestring[0]) {
			tb_error(c, 400, "INVALID_REQUEST_BODY",
				 "files must be an array of non-empty strings");
			goto out;
		}
	}
	results = cJSON_CreateArray();
	cJSON_ArrayForEach(f, files)
	    replace_one(c, f->valuestring, pat->valuestring, rep->valuestring, results);
	tb_json(c, 200, results);
out:
	cJSON_Delete(body);
}
