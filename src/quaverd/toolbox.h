/*
 * quaverd's toolbox (daytona-api.md sections 5 and 6): the routes under
 * /toolbox/{sandboxId}/..., served for a started sandbox inside its view
 * (view.h). api.c hands every /toolbox request here after checking the
 * token; nothing here knows about the /api side.
 */
#ifndef QUAVERD_TOOLBOX_H
#define QUAVERD_TOOLBOX_H

#include "http.h"
#include "store.h"

/* Largest upload body, and the size above which the HTTP layer spools it to a file. */
#define TOOLBOX_MAX_UPLOAD (64ULL << 30)
#define TOOLBOX_SPOOL_OVER (1ULL << 20)

/*
 * Handles a request whose path starts with "/toolbox/" (@rest is what follows
 * it: "ID/files/info"). Runs on a worker thread.
 */
void toolbox_handle(struct store *st, const struct http_request *req, struct http_response *resp,
		    const char *rest);

/*
 * The body policy of toolbox routes: true when @path is an upload route
 * (then @policy is set: large bodies, spooled); false leaves the caller's.
 */
bool toolbox_body_policy(const char *method, const char *path, struct http_body_policy *policy);

/*
 * ---- private to toolbox*.c -----------------------------------------------
 */
#ifdef QUAVERD_TOOLBOX_INTERNAL

#include <stdarg.h>

#include "view.h"

/* One toolbox request on a started sandbox. */
struct tb_call {
	struct store *store;
	const struct http_request *req;
	struct http_response *resp;
	struct view view;
	const char *route; /* "files/info" */
};

/*
 * Daemon-shaped errors (daytona-api.md 1.3): {statusCode, message, code,
 * timestamp, path, method}. @code NULL picks the generic code of the status.
 */
void tb_error(struct tb_call *c, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The error JSON alone (for bulk-download parts); caller frees. */
char *tb_error_json(const struct http_request *req, int status, const char *code,
		    const char *message);
/*
 * Maps a resolver / syscall error on @path to a status and code
 * (-ENOENT 404 FILE_NOT_FOUND, -EACCES/-EPERM/-EROFS 403 FILE_ACCESS_DENIED,
 * -ENOTDIR/-EINVAL/-ENAMETOOLONG/-ELOOP 400 INVALID_FILE_PATH...) and replies.
 */
void tb_errno(struct tb_call *c, int rc, const char *what, const char *path);
void tb_errno_status(int rc, int *status, const char **code);
/* JSON reply; takes @json. */
void tb_json(struct tb_call *c, int status, cJSON *json);
/* A reply without a body (200, 201, 204). */
void tb_reply_empty(struct tb_call *c, int status);
/* A query parameter that must be there and non-empty; replies 400 and returns NULL when not. */
const char *tb_need(struct tb_call *c, const char *name);
/* Parses an octal mode ("0755", "755"); false on garbage or bits beyond 07777. */
bool tb_parse_mode(const char *s, mode_t *out);

/* A FileInfo object for @node shown as @shown_path / @name. NULL on ENOMEM. */
cJSON *tb_file_info(const struct view *v, const struct view_node *node, const char *name,
		    const char *shown_path);
/* Appends one FileInfo as JSON text to @out (listings are built as text, not cJSON trees). */
int tb_file_info_text(struct buf *out, const struct view *v, int mount, const struct stat *st,
		      const char *name, const char *shown_path);
/* Appends @s as a JSON string; invalid UTF-8 becomes U+FFFD as Go's encoder does. */
int tb_json_string(struct buf *out, const char *s, size_t len);
/* @dir + "/" + @name without doubling the slash; malloc'd. */
char *tb_join(const char *dir, const char *name);
/* The temp-name prefix of uploads in progress (hidden from listings). */
#define TB_UPLOAD_PREFIX ".quaverd-upload-"

/* toolbox_files.c */
void tb_list(struct tb_call *c);
void tb_info(struct tb_call *c);
void tb_download(struct tb_call *c);
void tb_bulk_download(struct tb_call *c);
void tb_folder(struct tb_call *c);
void tb_delete(struct tb_call *c);
void tb_move(struct tb_call *c);
void tb_permissions(struct tb_call *c);

/* toolbox_upload.c */
void tb_upload(struct tb_call *c, bool v2);
void tb_bulk_upload(struct tb_call *c);

/*
 * An atomic replacement of one file in the view: data goes to an unnamed
 * file (O_TMPFILE) or a hidden temp name in the target's directory, is
 * flushed, and appears under the target name by one rename.
 */
struct tb_writer {
	int dirfd; /* the target's directory (owned) */
	char name[NAME_MAX + 1];
	int fd;	      /* the data */
	bool unnamed; /* O_TMPFILE: nothing to clean up on failure */
	char tmp_name[NAME_MAX + 1];
	mode_t mode;
	uint64_t bytes;
};
/* Resolves @path (creating parents) and opens the writer; replies and returns false on error. */
bool tb_writer_open(struct tb_call *c, const char *path, struct tb_writer *w);
/* The same without replying: 0, or -errno with *why the start of a sentence. */
int tb_writer_open_rc(const struct view *v, const char *path, struct tb_writer *w,
		      const char **why);
int tb_writer_write(struct tb_writer *w, const void *data, size_t len);
/* fsync + rename over the target. 0 or -errno; the writer is closed either way. */
int tb_writer_commit(struct tb_writer *w);
void tb_writer_abort(struct tb_writer *w);

/* toolbox_search.c */
void tb_find(struct tb_call *c);
void tb_search(struct tb_call *c);
void tb_replace(struct tb_call *c);

#endif /* QUAVERD_TOOLBOX_INTERNAL */

#endif
