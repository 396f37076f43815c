/* What ops.c shares with the other files that speak FUSE (ops_files.c). */
#ifndef QUAVERFS_OPS_INTERNAL_H
#define QUAVERFS_OPS_INTERNAL_H

#include "core.h"
#include "ops.h"

#define ENTRY_TIMEOUT 1.0
#define ATTR_TIMEOUT 1.0
#define NEGATIVE_TIMEOUT 1.0

/* The mounted session (NULL before the mount). */
struct fuse_session *ops_session(void);

/* The timeout less the age of data learnt at @data_ms (monotonic ms), never below 0. */
double timeout_left(double timeout, int64_t data_ms);

/* Between these two, a backend call or wait on this thread ends with EINTR on an interrupt. */
void scope_begin(fuse_req_t req);
void scope_end(fuse_req_t req);

/* Tells the kernel to drop what a change made stale. Never called holding a lock. */
void apply_changes(struct qfs *fs, const struct core_changes *ch);
void reply_negative(fuse_req_t req, double timeout);

/* ---- ops_files.c: the operations on files/ inodes ---- */

void ofiles_init(struct qfs *fs);
int ofiles_root_entry(struct qfs *fs, const char *sb_id, struct fuse_entry_param *e,
		      struct dt_error *err);
void ofiles_lookup(fuse_req_t req, fuse_ino_t parent, const char *name);
void ofiles_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup);
void ofiles_getattr(fuse_req_t req, fuse_ino_t ino);
void ofiles_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		    struct fuse_file_info *fi);
void ofiles_readlink(fuse_req_t req, fuse_ino_t ino);
void ofiles_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode);
void ofiles_unlink(fuse_req_t req, fuse_ino_t parent, const char *name);
void ofiles_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name);
void ofiles_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		   const char *newname, unsigned int flags);
void ofiles_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void ofiles_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		   struct fuse_file_info *fi);
void ofiles_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi);
void ofiles_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		  struct fuse_file_info *fi);
void ofiles_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void ofiles_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);
void ofiles_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void ofiles_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void ofiles_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi, bool plus);
void ofiles_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void ofiles_statfs(fuse_req_t req, fuse_ino_t ino);
/* `flush` and SIGHUP: every cache of the mount, the kernel's included. */
void ops_drop_caches(struct qfs *fs);

#endif
