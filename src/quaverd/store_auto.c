/*
 * Auto-stop, auto-archive and auto-delete: one thread looks at every sandbox
 * a few times a second and acts through the same operations a client would
 * use, so an automatic change takes the same locks and writes the same
 * records. Intervals are minutes of the scaled clock (--clock-scale).
 *
 * - started, no API or toolbox call naming it for autoStopInterval minutes
 *   (0: never) -> stopped;
 * - stopped or archived, autoDeleteInterval >= 0 minutes after it stopped
 *   -> deleted (0: at once);
 * - else stopped for autoArchiveInterval minutes -> archived.
 */
#define QUAVERD_STORE_INTERNAL
#include "store.h"

#include <inttypes.h>
#include <stdlib.h>
#include <time.h>

#include "log.h"
#include "util.h"

#define TICK_MS 100
#define MAX_ACTIONS_PER_TICK 64

enum auto_action { AUTO_STOP, AUTO_ARCHIVE, AUTO_DELETE };

struct pending_action {
	struct sandbox *sb;
	enum auto_action what;
};

/* Decides what is due for @sb now. Under st->lock. Returns false when nothing is. */
static bool due_locked(struct store *st, const struct sandbox *sb, int64_t now,
		       enum auto_action *what)
{
	const struct store_sandbox_info *i = &sb->info;

	if (sb->job || sb->removed)
		return false;
	if (sb->state == SB_STARTED) {
		if (i->auto_stop_min > 0 &&
		    now - i->last_activity_ms >= store_minutes_ms(st, i->auto_stop_min)) {
			*what = AUTO_STOP;
			return true;
		}
		return false;
	}
	if ((sb->state != SB_STOPPED && sb->state != SB_ARCHIVED) || sb->stopped_ms <= 0)
		return false;
	if (i->auto_delete_min >= 0 &&
	    now - sb->stopped_ms >= store_minutes_ms(st, i->auto_delete_min)) {
		*what = AUTO_DELETE;
		return true;
	}
	if (sb->state == SB_STOPPED && i->auto_archive_min > 0 &&
	    now - sb->stopped_ms >= store_minutes_ms(st, i->auto_archive_min)) {
		*what = AUTO_ARCHIVE;
		return true;
	}
	return false;
}

static void act(struct store *st, struct pending_action *a)
{
	static const char *const verbs[] = {"auto-stop", "auto-archive", "auto-delete"};
	struct store_err err = {{0}};
	int rc = 0;

	log_info("sandbox %s (%s): %s (interval reached)", a->sb->info.id, a->sb->info.name,
		 verbs[a->what]);
	switch (a->what) {
	case AUTO_STOP:
		rc = sb_stop(st, a->sb, false, &err);
		break;
	case AUTO_ARCHIVE:
		rc = sb_archive(st, a->sb, &err);
		break;
	case AUTO_DELETE:
		rc = sb_delete(st, a->sb, &err);
		break;
	}
	/* A client may have changed the sandbox in between; that is not a failure. */
	if (rc < 0)
		log_debug("sandbox %s: %s skipped: %s", a->sb->info.id, verbs[a->what], err.msg);
}

static bool tick_sleep(struct store *st)
{
	struct timespec ts;
	int64_t deadline = now_mono_ms() + TICK_MS;
	bool open;

	ts.tv_sec = (time_t)(deadline / 1000);
	ts.tv_nsec = (long)(deadline % 1000) * 1000000L;
	pthread_mutex_lock(&st->lock);
	while (!st->closing && now_mono_ms() < deadline)
		pthread_cond_timedwait(&st->cv, &st->lock, &ts);
	open = !st->closing;
	pthread_mutex_unlock(&st->lock);
	return open;
}

void *store_ticker_main(void *arg)
{
	struct store *st = arg;
	struct pending_action actions[MAX_ACTIONS_PER_TICK];

	while (tick_sleep(st)) {
		int64_t now = now_wall_ms();
		size_t n = 0;

		pthread_mutex_lock(&st->lock);
		for (size_t i = 0; i < st->sandboxes.len && n < MAX_ACTIONS_PER_TICK; i++) {
			struct sandbox *sb = st->sandboxes.items[i];
			enum auto_action what;
			if (!due_locked(st, sb, now, &what))
				continue;
			sb->refs++;
			actions[n].sb = sb;
			actions[n].what = what;
			n++;
		}
		pthread_mutex_unlock(&st->lock);
		for (size_t i = 0; i < n; i++) {
			act(st, &actions[i]);
			sb_put(st, actions[i].sb);
		}
	}
	return NULL;
}
