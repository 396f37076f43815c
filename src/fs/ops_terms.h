/*
 * The FUSE side of the pty node and terminals/ of each sandbox (fs-layout.md, Terminals).
 * Its inodes have their own range: bits 63..61 of the number are 011, so
 * ops.c hands every operation on them here. Nothing outside this pair of
 * files knows what is inside the range.
 *
 * A note from the lead for whoever builds it: shell idioms read every
 * regular file of a sandbox directory (cat or grep -l of every node of
 * sandboxes/s1, file managers sniffing content; tests/test_fs_shell.py
 * does the first). An open of `pty` for reading only must therefore not start a
 * terminal and must not block: it reads as empty (EOF at once); a terminal
 * starts for an open with write access (O_WRONLY or O_RDWR). Document it in
 * fs-layout.md. tests/test_fs_shell.py's control_walk skips runs/,
 * terminals/ and pty as stream nodes.
 */
#ifndef QUAVERFS_OPS_TERMS_H
#define QUAVERFS_OPS_TERMS_H

#include <stdbool.h>
#include <stdint.h>

#include "core.h"
#include "node.h"
#include "ops.h"

#define TERMS_INO_TAG (3ULL << 61)

static inline bool terms_is_ino(uint64_t ino)
{
	return (ino >> 61) == 3;
}

/* At init (the session is up) and at unmount. */
void oterms_init(struct qfs *fs);
void oterms_destroy(struct qfs *fs);

/* The entry of the sub-tree's root (@kind: NK_SB_PTY or NK_SB_TERMINALS) in sandbox @sb_id,
 * counting a lookup. */
int oterms_root_entry(struct qfs *fs, enum node_kind kind, const char *sb_id, const char *sb_name,
		      struct fuse_entry_param *e, struct dt_error *err);
/* Its inode number, for readdir without attributes. */
uint64_t oterms_root_ino(struct qfs *fs, enum node_kind kind, const char *sb_id);

void oterms_lookup(fuse_req_t req, fuse_ino_t parent, const char *name);
/* The kernel forgot @nlookup lookups of @ino (no reply: ops.c sends it). */
void oterms_forget(struct qfs *fs, fuse_ino_t ino, uint64_t nlookup);
void oterms_getattr(fuse_req_t req, fuse_ino_t ino);
void oterms_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		    struct fuse_file_info *fi);
void oterms_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode);
void oterms_unlink(fuse_req_t req, fuse_ino_t parent, const char *name);
void oterms_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name);
void oterms_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		   const char *newname, unsigned int flags);
void oterms_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void oterms_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		   struct fuse_file_info *fi);
void oterms_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi);
void oterms_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		  struct fuse_file_info *fi);
void oterms_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void oterms_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);
void oterms_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void oterms_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void oterms_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi, bool plus);
void oterms_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void oterms_poll(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
		 struct fuse_pollhandle *ph);

#endif
