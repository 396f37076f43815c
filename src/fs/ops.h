/* The FUSE low-level operations of quaverfs: the one place that speaks to the kernel. */
#ifndef QUAVERFS_OPS_H
#define QUAVERFS_OPS_H

#define FUSE_USE_VERSION 314
#include <stdbool.h>
#include <fuse_lowlevel.h>

extern const struct fuse_lowlevel_ops quaverfs_ops;

/*
 * The session notifications go to; set once it is mounted, before the loop.
 * Starts the notifier thread; ops_shutdown() stops it (before the session
 * is destroyed).
 */
void ops_set_session(struct fuse_session *se);
void ops_shutdown(void);
/* After the unmount: waits for whatever ops_shutdown() could not stop. */
void ops_shutdown_finish(void);

/*
 * ops_notify.c: kernel cache invalidations, queued and sent by a thread of
 * their own (never from a request handler, which may hold the very
 * directory lock an invalidation needs). Safe from any thread.
 */
int notify_start(struct fuse_session *se);
/*
 * Drops what is queued and waits (at most @wait_ms; < 0: for ever) for the
 * thread to end. False when it is still blocked in the kernel (on a lock a
 * request we will never answer holds): call again after the unmount.
 */
bool notify_stop(int wait_ms);
/* Drops the kernel's (maybe negative) entry @name of directory @parent. */
void notify_entry(fuse_ino_t parent, const char *name);
/* Drops the attributes of @ino, and its cached data in [@off, @off + @len) when @off >= 0. */
void notify_inode(fuse_ino_t ino, off_t off, off_t len);

#endif
