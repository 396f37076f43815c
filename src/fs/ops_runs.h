/*
 * The FUSE side of runs/ of each sandbox: sessions and their commands (fs-layout.md, Runs).
 * Its inodes have their own range: bits 63..61 of the number are 010, so
 * ops.c hands every operation on them here. Nothing outside this pair of
 * files knows what is inside the range.
 */
#ifndef QUAVERFS_OPS_RUNS_H
#define QUAVERFS_OPS_RUNS_H

#include <stdbool.h>
#include <stdint.h>

#include "core.h"
#include "node.h"
#include "ops.h"

#define RUNS_INO_TAG (2ULL << 61)

static inline bool runs_is_ino(uint64_t ino)
{
	return (ino >> 61) == 2;
}

/* At init (the session is up) and at unmount. */
void oruns_init(struct qfs *fs);
void oruns_destroy(struct qfs *fs);

/* The entry of the sub-tree's root in sandbox @sb_id, counting a lookup. */
int oruns_root_entry(struct qfs *fs, const char *sb_id, const char *sb_name,
		     struct fuse_entry_param *e, struct dt_error *err);
/* Its inode number, for readdir without attributes. */
uint64_t oruns_root_ino(struct qfs *fs, const char *sb_id);

void oruns_lookup(fuse_req_t req, fuse_ino_t parent, const char *name);
/* The kernel forgot @nlookup lookups of @ino (no reply: ops.c sends it). */
void oruns_forget(struct qfs *fs, fuse_ino_t ino, uint64_t nlookup);
void oruns_getattr(fuse_req_t req, fuse_ino_t ino);
void oruns_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		   struct fuse_file_info *fi);
void oruns_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode);
void oruns_unlink(fuse_req_t req, fuse_ino_t parent, const char *name);
void oruns_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name);
void oruns_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		  const char *newname, unsigned int flags);
void oruns_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void oruns_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		  struct fuse_file_info *fi);
void oruns_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi);
void oruns_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		 struct fuse_file_info *fi);
void oruns_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void oruns_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);
void oruns_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void oruns_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void oruns_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		   struct fuse_file_info *fi, bool plus);
void oruns_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void oruns_poll(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
		struct fuse_pollhandle *ph);

#endif
