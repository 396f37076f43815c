/*
 * quaverfs: options, credentials, the backend (Daytona or the local
 * quaverd), then the FUSE session. Everything that can fail is checked
 * before the process daemonizes, so the terminal sees the reason.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend.h"
#include "buf.h"
#include "core.h"
#include "files.h"
#include "local.h"
#include "log.h"
#include "ops.h"
#include "ops_internal.h"
#include "util.h"

#define DEFAULT_CLOUD_URL "https://app.daytona.io/api"
#define DEFAULT_OP_TIMEOUT_S 120
#define QUAVERD_START_WAIT_MS 15000

struct options {
	char *api_url, *target, *key_file, *state_dir, *quaverd, *log_file, *op_timeout;
	char *cache_dir, *cache_size;
	char *ca_file;
	int autostart;
	char *positional[2];
	int npositional;
	int foreground, debug, help, version, secret_option;
};

enum { KEY_FOREGROUND, KEY_DEBUG, KEY_HELP, KEY_VERSION, KEY_SECRET };

#define OPT(t, field) {t, offsetof(struct options, field), 0}
static const struct fuse_opt option_spec[] = {
	OPT("api_url=%s", api_url),
	OPT("target=%s", target),
	OPT("key_file=%s", key_file),
	OPT("state_dir=%s", state_dir),
	OPT("quaverd=%s", quaverd),
	OPT("log_file=%s", log_file),
	OPT("op_timeout=%s", op_timeout),
	OPT("cache_dir=%s", cache_dir),
	OPT("cache_size=%s", cache_size),
	OPT("ca_file=%s", ca_file),
	{"autostart", offsetof(struct options, autostart), 1},
	FUSE_OPT_KEY("-f", KEY_FOREGROUND),
	FUSE_OPT_KEY("-d", KEY_DEBUG),
	FUSE_OPT_KEY("debug", KEY_DEBUG),
	FUSE_OPT_KEY("-h", KEY_HELP),
	FUSE_OPT_KEY("--help", KEY_HELP),
	FUSE_OPT_KEY("-V", KEY_VERSION),
	FUSE_OPT_KEY("--version", KEY_VERSION),
	/* A key in an option would show in ps and mountinfo: refused, never echoed. */
	FUSE_OPT_KEY("api_key=", KEY_SECRET),
	FUSE_OPT_KEY("key=", KEY_SECRET),
	FUSE_OPT_KEY("token=", KEY_SECRET),
	FUSE_OPT_KEY("jwt=", KEY_SECRET),
	FUSE_OPT_END,
};

static int option_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
	struct options *o = data;

	(void)outargs;
	switch (key) {
	case KEY_FOREGROUND:
		o->foreground = 1;
		return 0;
	case KEY_DEBUG:
		o->debug = 1;
		return 0;
	case KEY_HELP:
		o->help = 1;
		return 0;
	case KEY_VERSION:
		o->version = 1;
		return 0;
	case KEY_SECRET:
		o->secret_option = 1;
		return 0;
	case FUSE_OPT_KEY_NONOPT:
		if (o->npositional == 2) {
			fprintf(stderr, "quaverfs: too many arguments: %s\n", arg);
			return -1;
		}
		o->positional[o->npositional++] = strdup(arg);
		return 0;
	default:
		return 1; /* a FUSE option: passed through */
	}
}

static void usage(FILE *out)
{
	fprintf(out,
		"usage: quaverfs [options] MOUNTPOINT\n"
		"       quaverfs SOURCE MOUNTPOINT -o OPTIONS   (as run by mount -t fuse.quaverfs)\n"
		"\n"
		"Mounts Daytona sandboxes, volumes and snapshots as directories.\n"
		"With no credentials and no api_url it starts (or reuses) the local quaverd.\n"
		"\n"
		"options:\n"
		"    -f                     stay in the foreground, log to stderr\n"
		"    -d                     debug log, one line per request (implies -f)\n"
		"    -o api_url=URL         the Daytona API (default: $DAYTONA_API_URL, else the\n"
		"                           local quaverd; with a key and no URL: %s)\n"
		"    -o target=T            region sent on create (default: $DAYTONA_TARGET)\n"
		"    -o key_file=PATH       read the API key from PATH (a 0600 file of yours)\n"
		"    -o ca_file=PATH        trust the CA certificates in PATH (PEM) for TLS to the\n"
		"                           API and toolbox (default: the system's CA store;\n"
		"                           certificates are always verified)\n"
		"    -o state_dir=DIR       the local quaverd's state dir\n"
		"                           (default: $XDG_DATA_HOME/quaverd)\n"
		"    -o quaverd=PATH        the quaverd binary to start\n"
		"    -o log_file=PATH       log there when in the background (default: syslog)\n"
		"    -o op_timeout=SECONDS  how long a state change may wait (default %d)\n"
		"    -o cache_dir=DIR       where files/ stages and caches file content (default:\n"
		"                           $XDG_CACHE_HOME/quaverfs, a 0700 directory of yours)\n"
		"    -o cache_size=MIB      clean cached file content kept at most (default 1024)\n"
		"    -o autostart           files/ of a stopped or archived sandbox starts it\n"
		"                           (default: EHOSTDOWN)\n"
		"    -o allow_other         let other users in (default_permissions is always on)\n"
		"    -h, --help             this help, then libfuse's mount options\n"
		"    -V, --version          versions\n"
		"\n"
		"credentials (never from argv or -o): DAYTONA_API_KEY, or DAYTONA_JWT_TOKEN with\n"
		"DAYTONA_ORGANIZATION_ID, or -o key_file=PATH.\n"
		"\n",
		DEFAULT_CLOUD_URL, DEFAULT_OP_TIMEOUT_S);
}

/* ---- credentials -------------------------------------------------------- */

/* Reads the key file, refusing any file others could read or replace. */
static int read_key_file(const char *path, char **key)
{
	struct buf b = BUF_INIT;
	struct stat st;
	FILE *f;
	char *start, *end;
	int ret = -1;

	f = fopen(path, "re");
	if (!f) {
		fprintf(stderr, "quaverfs: key_file %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode)) {
		fprintf(stderr, "quaverfs: key_file %s is not a regular file\n", path);
		goto out;
	}
	if (st.st_uid != getuid()) {
		fprintf(stderr, "quaverfs: key_file %s belongs to uid %u, not to you (uid %u)\n",
			path, (unsigned)st.st_uid, (unsigned)getuid());
		goto out;
	}
	if ((st.st_mode & 07777) != 0600) {
		fprintf(stderr,
			"quaverfs: key_file %s has mode %04o; refusing it: it must be 0600 "
			"(chmod 600 %s)\n",
			path, (unsigned)(st.st_mode & 07777), path);
		goto out;
	}
	for (;;) {
		char chunk[512];
		size_t n = fread(chunk, 1, sizeof(chunk), f);

		if (n == 0)
			break;
		if (buf_append(&b, chunk, n) < 0 || b.len > 16384)
			break;
		explicit_bzero(chunk, sizeof(chunk));
	}
	start = (char *)buf_str(&b);
	while (*start == ' ' || *start == '\t' || *start == '\n' || *start == '\r')
		start++;
	end = start + strcspn(start, "\r\n");
	while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	if (end == start) {
		fprintf(stderr, "quaverfs: key_file %s is empty\n", path);
		goto out;
	}
	*key = strndup(start, (size_t)(end - start));
	ret = *key ? 0 : -1;
out:
	if (b.data)
		explicit_bzero(b.data, b.len);
	buf_free(&b);
	fclose(f);
	return ret;
}

/* Takes a secret out of the environment: children never inherit it. */
static char *take_env(const char *name)
{
	const char *v = getenv(name);
	char *copy = v && v[0] ? strdup(v) : NULL;

	if (v) {
		explicit_bzero((char *)v, strlen(v));
		unsetenv(name);
	}
	return copy;
}

static char *absolute_path(const char *path)
{
	char cwd[PATH_MAX];
	struct buf b = BUF_INIT;

	if (path[0] == '/')
		return strdup(path);
	if (!getcwd(cwd, sizeof(cwd)))
		return NULL;
	buf_printf(&b, "%s/%s", cwd, path);
	return buf_steal(&b);
}

/* ---- the mountpoint ----------------------------------------------------- */

static void unescape_mountinfo(char *s)
{
	char *w = s;

	for (char *r = s; *r; r++) {
		if (r[0] == '\\' && r[1] >= '0' && r[1] <= '7' && r[2] && r[3]) {
			*w++ = (char)(((r[1] - '0') << 6) | ((r[2] - '0') << 3) | (r[3] - '0'));
			r += 3;
		} else {
			*w++ = *r;
		}
	}
	*w = '\0';
}

/* The source of the filesystem mounted at @path, when one is. */
static bool mounted_at(const char *path, char *source, size_t size)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[4096];
	bool found = false;

	if (!f)
		return false;
	while (fgets(line, sizeof(line), f)) {
		char *fields[10] = {0};
		char *save = NULL, *tok = strtok_r(line, " \n", &save);
		int n = 0;
		char *dash;

		while (tok && n < 10) {
			fields[n++] = tok;
			tok = strtok_r(NULL, " \n", &save);
		}
		if (n < 5)
			continue;
		unescape_mountinfo(fields[4]);
		if (strcmp(fields[4], path) != 0)
			continue;
		found = true;
		/* "... - fstype source superopts": the source is two after the dash. */
		dash = NULL;
		for (int i = 5; i < n; i++)
			if (strcmp(fields[i], "-") == 0 && i + 2 < n)
				dash = fields[i + 2];
		if (dash)
			unescape_mountinfo(dash);
		copy_str(source, size, dash ? dash : "?");
	}
	fclose(f);
	return found;
}

static char *check_mountpoint(const char *arg)
{
	char source[1024];
	struct stat st;
	char *real;

	/* mount.fuse3 -o drop_privileges hands over an open /dev/fuse. */
	if (strncmp(arg, "/dev/fd/", 8) == 0)
		return strdup(arg);
	if (stat(arg, &st) < 0) {
		if (errno == ENOTCONN)
			fprintf(stderr,
				"quaverfs: %s is a dead FUSE mount; unmount it first: "
				"fusermount3 -u %s\n",
				arg, arg);
		else
			fprintf(stderr, "quaverfs: mountpoint %s: %s\n", arg, strerror(errno));
		return NULL;
	}
	if (!S_ISDIR(st.st_mode)) {
		fprintf(stderr, "quaverfs: mountpoint %s is not a directory\n", arg);
		return NULL;
	}
	real = realpath(arg, NULL);
	if (!real) {
		fprintf(stderr, "quaverfs: mountpoint %s: %s\n", arg, strerror(errno));
		return NULL;
	}
	if (mounted_at(real, source, sizeof(source))) {
		fprintf(stderr,
			"quaverfs: %s is already mounted (%s); unmount it first: fusermount3 -u %s\n",
			real, source, real);
		free(real);
		return NULL;
	}
	return real;
}

/* ---- SIGHUP: drop every cache ------------------------------------------ */

static sem_t hup_sem;
static volatile sig_atomic_t hup_stop;

static void on_hup(int sig)
{
	(void)sig;
	sem_post(&hup_sem); /* async-signal-safe; the work is done by hup_main */
}

static void *hup_main(void *arg)
{
	struct qfs *fs = arg;

	for (;;) {
		while (sem_wait(&hup_sem) < 0 && errno == EINTR)
			;
		if (hup_stop)
			return NULL;
		log_info("SIGHUP: dropping every cache");
		ops_drop_caches(fs);
	}
}

/* After libfuse's handlers: SIGHUP flushes the caches instead of unmounting. */
static int start_hup(struct qfs *fs, pthread_t *thread)
{
	struct sigaction sa;

	if (sem_init(&hup_sem, 0, 0) < 0 || pthread_create(thread, NULL, hup_main, fs) != 0)
		return -1;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_hup;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	return sigaction(SIGHUP, &sa, NULL);
}

static void stop_hup(pthread_t thread)
{
	hup_stop = 1;
	sem_post(&hup_sem);
	pthread_join(thread, NULL);
	sem_destroy(&hup_sem);
}

static int parse_cache_size(const char *s, int64_t *bytes)
{
	int64_t mib;

	if (!s) {
		*bytes = 0;
		return 0;
	}
	if (parse_int64(s, 0, INT64_MAX >> 20, &mib) < 0) {
		fprintf(stderr, "quaverfs: cache_size=%s: a whole number of MiB\n", s);
		return -1;
	}
	*bytes = mib << 20;
	return 0;
}

/* ---- main --------------------------------------------------------------- */

struct startup {
	struct options opt;
	char *mountpoint;
	char *api_url;
	char *api_key, *jwt, *org_id, *target;
	char *state_dir; /* set for the local backend */
	char *ca_file;   /* absolute, checked readable; NULL: the system store */
	int op_timeout_s;
};

static bool looks_like_url(const char *s)
{
	return strncmp(s, "http://", 7) == 0 || strncmp(s, "https://", 8) == 0;
}

/*
 * -o ca_file: a PEM bundle to trust (curl's CAINFO, in place of the
 * system's bundle). Checked now, so a typo is said before mounting instead
 * of as a TLS error on every call. Verification itself is never off.
 */
static int check_ca_file(struct startup *s)
{
	struct stat st;

	if (!s->opt.ca_file)
		return 0;
	s->ca_file = absolute_path(s->opt.ca_file);
	if (!s->ca_file) {
		fprintf(stderr, "quaverfs: ca_file %s: %s\n", s->opt.ca_file, strerror(errno));
		return -1;
	}
	if (stat(s->ca_file, &st) < 0 || access(s->ca_file, R_OK) < 0) {
		fprintf(stderr, "quaverfs: ca_file %s: %s\n", s->ca_file, strerror(errno));
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		fprintf(stderr, "quaverfs: ca_file %s is not a regular file\n", s->ca_file);
		return -1;
	}
	return 0;
}

/* Decides the backend and the credentials. Returns 0 or -1 after a message. */
static int resolve_backend(struct startup *s)
{
	struct options *o = &s->opt;
	char *env_url = getenv("DAYTONA_API_URL");

	if (o->key_file) {
		if (read_key_file(o->key_file, &s->api_key) < 0)
			return -1;
	} else {
		s->api_key = take_env("DAYTONA_API_KEY");
	}
	if (!s->api_key) {
		s->jwt = take_env("DAYTONA_JWT_TOKEN");
		s->org_id = getenv("DAYTONA_ORGANIZATION_ID") && getenv("DAYTONA_ORGANIZATION_ID")[0]
				    ? strdup(getenv("DAYTONA_ORGANIZATION_ID"))
				    : NULL;
		if (s->jwt && !s->org_id) {
			fprintf(stderr,
				"quaverfs: DAYTONA_JWT_TOKEN needs DAYTONA_ORGANIZATION_ID\n");
			return -1;
		}
	}
	unsetenv("DAYTONA_API_KEY");
	unsetenv("DAYTONA_JWT_TOKEN");

	if (o->api_url)
		s->api_url = strdup(o->api_url);
	else if (o->npositional == 2 && looks_like_url(o->positional[0]))
		s->api_url = strdup(o->positional[0]);
	else if ((s->api_key || s->jwt) && env_url && env_url[0])
		s->api_url = strdup(env_url);
	else if (s->api_key || s->jwt)
		s->api_url = strdup(DEFAULT_CLOUD_URL);

	if (o->target)
		s->target = strdup(o->target);
	else if (getenv("DAYTONA_TARGET") && getenv("DAYTONA_TARGET")[0])
		s->target = strdup(getenv("DAYTONA_TARGET"));

	if (s->api_key || s->jwt)
		return 0;
	if (o->ca_file) {
		fprintf(stderr, "quaverfs: ca_file is for a remote API (https); the local quaverd "
				"speaks plain http on 127.0.0.1\n");
		return -1;
	}

	/* No credentials: the local quaverd, found by its state dir. */
	s->state_dir = o->state_dir ? absolute_path(o->state_dir) : local_default_state_dir();
	if (!s->state_dir) {
		fprintf(stderr, "quaverfs: no state dir: set $HOME or -o state_dir=DIR\n");
		return -1;
	}
	if (s->api_url) {
		/* A URL without a key: fine when it is this state dir's quaverd. */
		char *url = NULL, *token = NULL;
		bool started;
		char msg[512];

		if (local_read_url(s->state_dir, &url) == 0 && strcmp(url, s->api_url) == 0 &&
		    local_quaverd_ensure(s->state_dir, NULL, 1000, &url, &token, &started, msg,
					 sizeof(msg)) == 0) {
			free(url);
			s->api_key = token;
			return 0;
		}
		free(url);
		fprintf(stderr,
			"quaverfs: -o api_url=%s needs credentials: set DAYTONA_API_KEY (or "
			"DAYTONA_JWT_TOKEN and DAYTONA_ORGANIZATION_ID), or -o key_file=PATH\n",
			s->api_url);
		return -1;
	}
	{
		char *bin = local_find_quaverd(o->quaverd);
		char msg[600];
		bool started = false;
		int ret;

		if (o->quaverd && !bin) {
			fprintf(stderr, "quaverfs: -o quaverd=%s: not an executable file\n",
				o->quaverd);
			return -1;
		}
		ret = local_quaverd_ensure(s->state_dir, bin, QUAVERD_START_WAIT_MS, &s->api_url,
					   &s->api_key, &started, msg, sizeof(msg));
		free(bin);
		if (ret < 0) {
			fprintf(stderr, "quaverfs: %s\n", msg);
			return -1;
		}
		log_info("%s quaverd at %s (state dir %s)", started ? "started" : "using the running",
			 s->api_url, s->state_dir);
	}
	return 0;
}

/*
 * One request before mounting: a refused key or a wrong URL is better said
 * now. An unreachable backend is not fatal: the mount answers EIO until it
 * is back.
 */
static int probe_backend(struct qfs *fs, const char *url)
{
	struct cobj **items = NULL;
	struct dt_error err = {0};
	size_t n = 0;
	int ret = cache_list(fs->cache, OBJ_SANDBOX, &items, &n, &err);

	cobj_array_free(items, n);
	if (ret == 0)
		return 0;
	if (err.http_status == 401 || err.http_status == 403) {
		fprintf(stderr, "quaverfs: %s refused the credentials: %s\n", url, err.message);
		return -1;
	}
	if (err.http_status == 404) {
		fprintf(stderr, "quaverfs: %s does not look like the Daytona API (is /api missing?): %s\n",
			url, err.message);
		return -1;
	}
	log_warn("cannot reach %s now (mounting anyway; calls fail with EIO until it answers): %s",
		 url, err.message);
	return 0;
}

static int parse_op_timeout(const char *s, int *out)
{
	int64_t v;

	if (!s) {
		*out = DEFAULT_OP_TIMEOUT_S;
		return 0;
	}
	if (parse_int64(s, 1, 86400, &v) < 0) {
		fprintf(stderr, "quaverfs: op_timeout=%s: a number of seconds from 1 to 86400\n",
			s);
		return -1;
	}
	*out = (int)v;
	return 0;
}

/* Adds -o @opt, escaped: an URL may hold a comma. */
static int add_fuse_option(struct fuse_args *args, const char *opt)
{
	char *opts = NULL;
	int ret = fuse_opt_add_opt_escaped(&opts, opt);

	if (ret == 0)
		ret = fuse_opt_add_arg(args, "-o");
	if (ret == 0)
		ret = fuse_opt_add_arg(args, opts);
	free(opts);
	return ret;
}

/* Parses the FUSE options the way the session will, and says what is wrong. */
static int check_fuse_options(const char *argv0, const struct fuse_args *args)
{
	struct fuse_args probe = FUSE_ARGS_INIT(0, NULL);
	struct fuse_session *se = NULL;
	int ret = -1;

	if (fuse_opt_add_arg(&probe, argv0) < 0)
		goto out;
	for (int i = 1; i < args->argc; i++)
		if (fuse_opt_add_arg(&probe, args->argv[i]) < 0)
			goto out;
	se = fuse_session_new(&probe, &quaverfs_ops, sizeof(quaverfs_ops), NULL);
	ret = se ? 0 : -1; /* libfuse said why */
out:
	if (se)
		fuse_session_destroy(se);
	fuse_opt_free_args(&probe);
	return ret;
}

static void free_startup(struct startup *s)
{
	free(s->opt.api_url);
	free(s->opt.target);
	free(s->opt.key_file);
	free(s->opt.state_dir);
	free(s->opt.quaverd);
	free(s->opt.log_file);
	free(s->opt.op_timeout);
	free(s->opt.cache_dir);
	free(s->opt.cache_size);
	free(s->opt.ca_file);
	free(s->ca_file);
	free(s->opt.positional[0]);
	free(s->opt.positional[1]);
	free(s->mountpoint);
	free(s->api_url);
	if (s->api_key) {
		explicit_bzero(s->api_key, strlen(s->api_key));
		free(s->api_key);
	}
	if (s->jwt) {
		explicit_bzero(s->jwt, strlen(s->jwt));
		free(s->jwt);
	}
	free(s->org_id);
	free(s->target);
	free(s->state_dir);
}

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct fuse_args session_args = FUSE_ARGS_INIT(0, NULL);
	struct startup s;
	struct backend *bk = NULL;
	struct qfs fs;
	bool fs_ready = false, hup_ready = false;
	pthread_t hup_thread;
	struct fuse_session *se = NULL;
	struct fuse_loop_config *loop_cfg = NULL;
	struct dt_error err = {0};
	char url[1024], fsname[1100], *log_file = NULL, *cache_dir = NULL;
	int64_t cache_bytes = 0;
	int exit_code = 1, ret;

	memset(&s, 0, sizeof(s));
	if (fuse_opt_parse(&args, &s.opt, option_spec, option_proc) < 0)
		goto out;
	if (s.opt.help) {
		usage(stdout);
		printf("FUSE options:\n");
		fflush(stdout);
		fuse_lowlevel_help();
		exit_code = 0;
		goto out;
	}
	if (s.opt.version) {
		printf("quaverfs %s (libfuse %s)\n", QUAVER_VERSION, fuse_pkgversion());
		exit_code = 0;
		goto out;
	}
	if (s.opt.secret_option) {
		fprintf(stderr, "quaverfs: a key is never taken from -o (it would show in ps and "
				"/proc/self/mountinfo): use DAYTONA_API_KEY or -o key_file=PATH\n");
		goto out;
	}
	if (s.opt.npositional == 0) {
		usage(stderr);
		fprintf(stderr, "quaverfs: no mountpoint given\n");
		exit_code = 2;
		goto out;
	}
	if (s.opt.debug)
		s.opt.foreground = 1;
	log_init("quaverfs", s.opt.debug ? LOG_LVL_DEBUG : LOG_LVL_INFO, LOG_TO_STDERR, NULL);
	if (parse_op_timeout(s.opt.op_timeout, &s.op_timeout_s) < 0)
		goto out;
	if (parse_cache_size(s.opt.cache_size, &cache_bytes) < 0)
		goto out;
	if (s.opt.log_file && !(log_file = absolute_path(s.opt.log_file)))
		goto out;
	/* Made absolute now: the daemon's working directory becomes /. */
	if (s.opt.cache_dir && !(cache_dir = absolute_path(s.opt.cache_dir)))
		goto out;

	s.mountpoint = check_mountpoint(s.opt.positional[s.opt.npositional - 1]);
	if (!s.mountpoint)
		goto out;
	/* libfuse's options are checked before anything starts (quaverd, a request). */
	if (check_fuse_options(argv[0], &args) < 0)
		goto out;
	if (check_ca_file(&s) < 0 || resolve_backend(&s) < 0)
		goto out;
	/* From here on the process holds a key: no core dumps, no ptrace by others. */
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);

	{
		struct backend_config bc = {
			.api_url = s.api_url,
			.api_key = s.api_key,
			.jwt = s.jwt,
			.organization_id = s.org_id,
			.target = s.target,
			.ca_file = s.ca_file,
			.state_dir = s.state_dir,
			.wait_timeout_ms = (long)s.op_timeout_s * 1000,
		};

		if (backend_new(&bc, &bk, &err) < 0) {
			fprintf(stderr, "quaverfs: %s: %s\n", s.api_url, err.message);
			goto out;
		}
	}
	if (qfs_init(&fs, bk, s.op_timeout_s * 1000) < 0) {
		fprintf(stderr, "quaverfs: out of memory\n");
		goto out;
	}
	fs_ready = true;
	{
		struct files_config fc = {
			.cache_base = cache_dir,
			.autostart = s.opt.autostart != 0,
			.cache_bytes = cache_bytes,
		};
		char msg[PATH_MAX + 200];

		if (files_new(&fs, &fc, &fs.files, msg, sizeof(msg)) < 0) {
			fprintf(stderr, "quaverfs: %s\n", msg);
			goto out;
		}
	}
	backend_url(bk, url, sizeof(url));
	if (probe_backend(&fs, url) < 0)
		goto out;

	/* Ours first, so that the user's own -o fsname= or subtype= win. */
	snprintf(fsname, sizeof(fsname), "fsname=quaverfs#%s", url);
	if (fuse_opt_add_arg(&session_args, argv[0]) < 0 ||
	    add_fuse_option(&session_args, fsname) < 0 ||
	    add_fuse_option(&session_args, "subtype=quaverfs") < 0 ||
	    add_fuse_option(&session_args, "default_permissions") < 0)
		goto out;
	for (int i = 1; i < args.argc; i++)
		if (fuse_opt_add_arg(&session_args, args.argv[i]) < 0)
			goto out;

	se = fuse_session_new(&session_args, &quaverfs_ops, sizeof(quaverfs_ops), &fs);
	if (!se)
		goto out; /* libfuse said why */
	if (fuse_set_signal_handlers(se) < 0)
		goto out;

	if (fuse_session_mount(se, s.mountpoint) < 0)
		goto out; /* libfuse said why */
	log_info("mounted quaverfs#%s on %s", url, s.mountpoint);

	if (fuse_daemonize(s.opt.foreground) < 0)
		goto unmount;
	/* Threads of our own start after the fork of fuse_daemonize, or they would be lost. */
	ops_set_session(se);
	if (start_hup(&fs, &hup_thread) < 0)
		log_warn("cannot set up SIGHUP (it unmounts): %s", strerror(errno));
	else
		hup_ready = true;
	if (!s.opt.foreground) {
		log_close();
		if (log_init("quaverfs", LOG_LVL_INFO, log_file ? LOG_TO_FILE : LOG_TO_SYSLOG,
			     log_file) < 0)
			log_init("quaverfs", LOG_LVL_INFO, LOG_TO_SYSLOG, NULL);
	}

	loop_cfg = fuse_loop_cfg_create();
	if (!loop_cfg)
		goto unmount;
	/* State changes wait on the backend: let many run side by side. */
	fuse_loop_cfg_set_max_threads(loop_cfg, 64);
	fuse_loop_cfg_set_idle_threads(loop_cfg, 8);
	ret = fuse_session_loop_mt(se, loop_cfg);
	/* A positive value is the signal that ended the loop: a clean unmount too. */
	exit_code = ret < 0 ? 1 : 0;
	log_info("unmounting %s", s.mountpoint);
unmount:
	ops_shutdown();
	fuse_session_unmount(se);
	ops_shutdown_finish();
out:
	if (se) {
		fuse_remove_signal_handlers(se);
		fuse_session_destroy(se);
	}
	fuse_loop_cfg_destroy(loop_cfg);
	if (hup_ready)
		stop_hup(hup_thread);
	if (fs_ready) {
		files_free(fs.files);
		qfs_destroy(&fs);
	}
	backend_free(bk);
	fuse_opt_free_args(&args);
	fuse_opt_free_args(&session_args);
	free_startup(&s);
	free(log_file);
	free(cache_dir);
	log_close();
	return exit_code;
}
