/* The FUSE low-level operations of quaverfs: the one place that speaks to the kernel. */
#ifndef QUAVERFS_OPS_H
#define QUAVERFS_OPS_H

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>

extern const struct fuse_lowlevel_ops quaverfs_ops;

/* The session notifications go to; set once it exists, before the loop. */
void ops_set_session(struct fuse_session *se);

#endif
