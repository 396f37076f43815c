/*
 * Storage trees: packing a sandbox filesystem into one tar file and back
 * (GNU tar through run_argv, never a shell), the skeleton of a new
 * sandbox, volume subpaths, and removal through the trash in STATE/tmp.
 *
 * Every result appears by rename: a tar is written as NAME.part and renamed
 * when tar succeeded and the filesystem was flushed, so after a crash
 * "NAME exists" means "NAME is complete". store_recover.c relies on that.
 */
#define QUAVERD_STORE_INTERNAL
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "util.h"
#include "view.h"

bool path_exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

void tree_sync(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return;
	/* One syscall flushes everything tar wrote, so a rename never outlives the data. */
	syncfs(fd);
	close(fd);
}

static void last_line(const struct buf *out, char *why, size_t why_size)
{
	const char *text = buf_str(out);
	size_t len = strlen(text);

	while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
		len--;
	size_t start = len;
	while (start > 0 && text[start - 1] != '\n')
		start--;
	snprintf(why, why_size, "%.*s", (int)(len - start), text + start);
}

static int run_tar(const char *const argv[], bool changed_is_ok, char *why, size_t why_size)
{
	struct buf out = BUF_INIT;
	int rc = run_argv(argv, &out);

	if (rc < 0) {
		snprintf(why, why_size, "cannot run tar: %s", strerror(-rc));
	} else if (rc == 0 || (rc == 1 && changed_is_ok)) {
		/* Exit 1 when creating: a file changed while it was read (a started sandbox). */
		rc = 0;
	} else {
		char line[256];
		last_line(&out, line, sizeof(line));
		snprintf(why, why_size, "tar failed (exit %d): %s", rc,
			 line[0] ? line : "no output");
		rc = -EIO;
	}
	buf_free(&out);
	return rc;
}

int tree_pack(const char *dir, const char *tar_path, char *why, size_t why_size)
{
	char part[PATH_MAX];
	int rc;

	if (snprintf(part, sizeof(part), "%s.part", tar_path) >= (int)sizeof(part))
		return -ENAMETOOLONG;
	unlink(part);
	const char *const argv[] = {"tar",
				    "--create",
				    "--file",
				    part,
				    "--directory",
				    dir,
				    "--numeric-owner",
				    "--sparse",
				    "--warning=no-file-changed",
				    "--warning=no-file-removed",
				    ".",
				    NULL};
	rc = run_tar(argv, true, why, why_size);
	if (rc < 0) {
		unlink(part);
		return rc;
	}
	tree_sync(part);
	if (rename(part, tar_path) < 0) {
		rc = -errno;
		snprintf(why, why_size, "renaming the finished tar: %s", strerror(errno));
		unlink(part);
		return rc;
	}
	return 0;
}

int tree_unpack(const char *tar_path, const char *dir, char *why, size_t why_size)
{
	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		snprintf(why, why_size, "creating the target directory: %s", strerror(errno));
		return -errno;
	}
	const char *const argv[] = {
	    "tar",	   "--extract", "--file",	   tar_path,
	    "--directory", dir,		"--numeric-owner", "--same-permissions",
	    NULL};
	return run_tar(argv, false, why, why_size);
}

int tree_skeleton(const char *root)
{
	char path[PATH_MAX];
	int rc;

	if (snprintf(path, sizeof(path), "%s/home/daytona", root) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	rc = mkdir_p(path, 0755);
	if (rc < 0)
		return rc;
	snprintf(path, sizeof(path), "%s/tmp", root);
	if (mkdir(path, 01777) < 0 && errno != EEXIST)
		return -errno;
	/* mkdir applies the umask; /tmp must be world-writable and sticky. */
	if (chmod(path, 01777) < 0)
		return -errno;
	/* The rest of a Debian-like tree, an etc/ and mount points (view.c). */
	return view_seed_root(root);
}

int tree_mkdir_beneath(const char *base, const char *rel)
{
	char comp[NAME_MAX + 1];
	const char *p = rel;
	int fd, rc = 0;

	fd = open(base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	while (*p) {
		const char *slash = strchr(p, '/');
		size_t len = slash ? (size_t)(slash - p) : strlen(p);
		int next;

		if (len == 0 || len > NAME_MAX) {
			rc = len ? -ENAMETOOLONG : 0;
			if (rc)
				break;
			p++;
			continue;
		}
		memcpy(comp, p, len);
		comp[len] = '\0';
		if (!strcmp(comp, ".") || !strcmp(comp, "..")) {
			rc = -EINVAL;
			break;
		}
		if (mkdirat(fd, comp, 0755) < 0 && errno != EEXIST) {
			rc = -errno;
			break;
		}
		/* A symlink planted inside a volume must not lead the mkdir out of it. */
		next = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (next < 0) {
			rc = errno == ELOOP ? -ENOTDIR : -errno;
			break;
		}
		close(fd);
		fd = next;
		p += len;
		if (*p == '/')
			p++;
	}
	close(fd);
	return rc;
}

int tree_remove(struct store *st, const char *path)
{
	char trash[PATH_MAX];
	int rc;

	if (!path_exists(path))
		return 0;
	rc = tmp_path(st, "trash", trash, sizeof(trash));
	if (rc == 0 && rename(path, trash) == 0) {
		/* Gone from its place at once; the slow part happens in the trash. */
		char parent[PATH_MAX];
		copy_str(parent, sizeof(parent), path);
		char *slash = strrchr(parent, '/');
		if (slash) {
			*slash = '\0';
			fsync_dir(parent);
		}
		rc = rm_rf(trash);
		/*
		 * ENOTEMPTY: a tar orphaned by a SIGKILLed quaverd may still be
		 * writing into it (run_argv children outlive us); it ends soon.
		 */
		for (int i = 0; rc == -ENOTEMPTY && i < 20; i++) {
			usleep(100 * 1000);
			rc = rm_rf(trash);
		}
		if (rc < 0)
			log_warn("removing %s: %s (left in the trash until the next start)", trash,
				 strerror(-rc));
		return 0;
	}
	rc = rm_rf(path);
	if (rc < 0)
		log_warn("removing %s: %s", path, strerror(-rc));
	return rc;
}
