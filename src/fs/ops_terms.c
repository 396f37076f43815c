/*
 * The FUSE side of the pty node and terminals/: a placeholder until it is built.
 * Every operation answers without a request; nothing is served yet.
 */
#include "ops_terms.h"

#include <errno.h>
#include <poll.h>
#include <string.h>

#include "ops_internal.h"

/* Clear of the range bits, and of bit 0 (which tells the pty from terminals/). */
#define STUB_MASK 0x1ffffffffffffffeULL

static uint64_t name_hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

static void stub_attr(struct qfs *fs, fuse_ino_t ino, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_mode = (ino & 1) ? S_IFREG | 0644 : S_IFDIR | 0755;
	st->st_nlink = 1;
	st->st_uid = fs->uid;
	st->st_gid = fs->gid;
}

void oterms_init(struct qfs *fs)
{
	(void)fs;
}

void oterms_destroy(struct qfs *fs)
{
	(void)fs;
}

uint64_t oterms_root_ino(struct qfs *fs, enum node_kind kind, const char *sb_id)
{
	(void)fs;
	return TERMS_INO_TAG | (name_hash(sb_id) & STUB_MASK) | (kind == NK_SB_PTY);
}

int oterms_root_entry(struct qfs *fs, enum node_kind kind, const char *sb_id, const char *sb_name,
		      struct fuse_entry_param *e, struct dt_error *err)
{
	(void)sb_name;
	(void)err;
	memset(e, 0, sizeof(*e));
	e->ino = oterms_root_ino(fs, kind, sb_id);
	stub_attr(fs, e->ino, &e->attr);
	e->attr_timeout = ATTR_TIMEOUT;
	e->entry_timeout = ENTRY_TIMEOUT;
	return 0;
}

void oterms_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	(void)parent;
	(void)name;
	fuse_reply_err(req, ENOENT);
}

void oterms_forget(struct qfs *fs, fuse_ino_t ino, uint64_t nlookup)
{
	(void)fs;
	(void)ino;
	(void)nlookup;
}

void oterms_getattr(fuse_req_t req, fuse_ino_t ino)
{
	struct stat st;

	stub_attr(fuse_req_userdata(req), ino, &st);
	fuse_reply_attr(req, &st, ATTR_TIMEOUT);
}

void oterms_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		    struct fuse_file_info *fi)
{
	(void)ino;
	(void)attr;
	(void)to_set;
	(void)fi;
	fuse_reply_err(req, EPERM);
}

void oterms_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	(void)parent;
	(void)name;
	(void)mode;
	fuse_reply_err(req, ENOTSUP);
}

void oterms_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	(void)parent;
	(void)name;
	fuse_reply_err(req, ENOENT);
}

void oterms_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	(void)parent;
	(void)name;
	fuse_reply_err(req, ENOENT);
}

void oterms_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		   const char *newname, unsigned int flags)
{
	(void)parent;
	(void)name;
	(void)newparent;
	(void)newname;
	(void)flags;
	fuse_reply_err(req, EPERM);
}

void oterms_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, ENOTSUP);
}

void oterms_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		   struct fuse_file_info *fi)
{
	(void)parent;
	(void)name;
	(void)mode;
	(void)fi;
	fuse_reply_err(req, ENOTSUP);
}

void oterms_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	(void)ino;
	(void)size;
	(void)off;
	(void)fi;
	fuse_reply_err(req, EIO);
}

void oterms_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		  struct fuse_file_info *fi)
{
	(void)ino;
	(void)buf;
	(void)size;
	(void)off;
	(void)fi;
	fuse_reply_err(req, EIO);
}

/* Never ENOSYS for flush, fsync or poll: the kernel would remember it for the whole mount. */
void oterms_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, 0);
}

void oterms_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)ino;
	(void)datasync;
	(void)fi;
	fuse_reply_err(req, 0);
}

void oterms_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, 0);
}

void oterms_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	fi->fh = 0;
	fuse_reply_open(req, fi);
}

void oterms_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi, bool plus)
{
	(void)ino;
	(void)size;
	(void)off;
	(void)fi;
	(void)plus;
	fuse_reply_buf(req, NULL, 0);
}

void oterms_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, 0);
}

void oterms_poll(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
		 struct fuse_pollhandle *ph)
{
	(void)ino;
	(void)fi;
	if (ph)
		fuse_pollhandle_destroy(ph);
	fuse_reply_poll(req, POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM);
}
