/*
 * Kernel cache invalidations sent from a thread of their own. A request
 * handler must not invalidate an entry of a directory whose lock the kernel
 * holds for that very request (mkdir, unlink, create...: a deadlock), and a
 * cache refresh that finds an object gone runs inside some request. So
 * everything is queued here and sent by the notifier thread, which waits
 * for whatever lock the kernel needs without holding anything of ours.
 */
#include "ops.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "node.h"
#include "util.h"

/* Beyond this many pending notes new ones are dropped: the timeouts still bound staleness. */
#define NOTIFY_QUEUE_MAX 65536

struct note {
	struct note *next;
	bool entry;	/* an entry (@parent, @name) or an inode (@ino, @off, @len) */
	fuse_ino_t ino; /* the parent for an entry */
	off_t off, len;
	char name[];
};

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct note *head, *tail;
	size_t count;
	bool running, stopping;
	pthread_t thread;
	struct fuse_session *se;
} nq = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .cond = PTHREAD_COND_INITIALIZER,
};

static void *notify_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&nq.lock);
	for (;;) {
		struct note *n;
		int ret;

		while (!nq.head && !nq.stopping)
			pthread_cond_wait(&nq.cond, &nq.lock);
		if (!nq.head)
			break;
		n = nq.head;
		nq.head = n->next;
		if (!nq.head)
			nq.tail = NULL;
		nq.count--;
		pthread_mutex_unlock(&nq.lock);
		if (n->entry)
			ret = fuse_lowlevel_notify_inval_entry(nq.se, n->ino, n->name,
							       strlen(n->name));
		else
			ret = fuse_lowlevel_notify_inval_inode(nq.se, n->ino, n->off, n->len);
		/* ENOENT: the kernel does not know the name or inode any more, as wanted. */
		if (ret < 0 && ret != -ENOENT)
			log_debug("invalidation of %s %lu%s%s failed: %s",
				  n->entry ? "entry" : "inode", (unsigned long)n->ino,
				  n->entry ? " " : "", n->entry ? n->name : "", strerror(-ret));
		free(n);
		pthread_mutex_lock(&nq.lock);
	}
	pthread_mutex_unlock(&nq.lock);
	return NULL;
}

int notify_start(struct fuse_session *se)
{
	int rc;

	pthread_mutex_lock(&nq.lock);
	nq.se = se;
	nq.stopping = false;
	rc = pthread_create(&nq.thread, NULL, notify_main, NULL);
	nq.running = rc == 0;
	pthread_mutex_unlock(&nq.lock);
	return -rc;
}

bool notify_stop(int wait_ms)
{
	struct timespec until;
	struct note *n;
	int rc;

	pthread_mutex_lock(&nq.lock);
	if (!nq.running) {
		pthread_mutex_unlock(&nq.lock);
		return true;
	}
	nq.stopping = true;
	/* Unmounting: nothing is left to invalidate. */
	while ((n = nq.head)) {
		nq.head = n->next;
		free(n);
	}
	nq.tail = NULL;
	nq.count = 0;
	pthread_cond_signal(&nq.cond);
	pthread_mutex_unlock(&nq.lock);

	if (wait_ms < 0) {
		rc = pthread_join(nq.thread, NULL);
	} else {
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += wait_ms / 1000;
		until.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		rc = pthread_timedjoin_np(nq.thread, NULL, &until);
	}
	if (rc != 0)
		return false;
	pthread_mutex_lock(&nq.lock);
	nq.running = false;
	pthread_mutex_unlock(&nq.lock);
	return true;
}

static void push(struct note *n)
{
	pthread_mutex_lock(&nq.lock);
	if (!nq.running || nq.stopping || nq.count >= NOTIFY_QUEUE_MAX) {
		pthread_mutex_unlock(&nq.lock);
		free(n);
		return;
	}
	n->next = NULL;
	if (nq.tail)
		nq.tail->next = n;
	else
		nq.head = n;
	nq.tail = n;
	nq.count++;
	pthread_cond_signal(&nq.cond);
	pthread_mutex_unlock(&nq.lock);
}

void notify_entry(fuse_ino_t parent, const char *name)
{
	size_t len = strlen(name);
	struct note *n;

	if (!parent || len == 0 || len > NAME_MAX)
		return;
	n = calloc(1, sizeof(*n) + len + 1);
	if (!n)
		return;
	n->entry = true;
	n->ino = parent;
	memcpy(n->name, name, len + 1);
	push(n);
}

void notify_inode(fuse_ino_t ino, off_t off, off_t len)
{
	struct note *n;

	if (!ino)
		return;
	n = calloc(1, sizeof(*n) + 1);
	if (!n)
		return;
	n->ino = ino;
	n->off = off;
	n->len = len;
	push(n);
}
