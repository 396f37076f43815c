/*
 * quaverd: the local Daytona-compatible server. This file is the program:
 * the command line and the state directory contract of doc/quaverd.md
 * (token, lock, port and url files), then store, api and HTTP server, and
 * a clean stop on SIGTERM or SIGINT.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api.h"
#include "cloudlike.h"
#include "events.h"
#include "http.h"
#include "log.h"
#include "runtime.h"
#include "store.h"
#include "util.h"

#define TOKEN_HEX_LEN 64
#define MAX_BODY_LIMIT (1024ULL * 1024 * 1024)
/* Cloud-like mode without --transition-delay: transitional states last this long. */
#define CLOUD_LIKE_DEFAULT_DELAY_MS 500

struct options {
	char state_dir[PATH_MAX];
	const char *listen_addr;
	int port;
	enum log_level log_level;
	const char *log_file;
	double clock_scale;
	int transition_delay_ms;
	bool have_transition_delay;
	uint64_t max_body;
	int workers;
	/* cloud-like mode (cloudlike.h) */
	bool cloud_like;
	int lifecycle_delay_ms;
	bool have_lifecycle_delay;
	int toolbox_port;
	double fault_rate;
	uint64_t fault_seed;
	bool have_fault_seed;
	const char *fault_source;
	int fault_retry_after_s;
};

static void usage(FILE *out)
{
	fprintf(
	    out,
	    "Usage: quaverd [OPTION]...\n"
	    "Serve the Daytona API on 127.0.0.1, keeping sandboxes, volumes and snapshots\n"
	    "in a state directory.\n"
	    "\n"
	    "  --state-dir DIR         where everything lives\n"
	    "                          (default $XDG_DATA_HOME/quaverd or ~/.local/share/quaverd)\n"
	    "  --listen ADDR           address to bind (default 127.0.0.1)\n"
	    "  --port N                TCP port, 0 picks a free one (default 0)\n"
	    "  --log-level LEVEL       error, warn, info or debug (default info)\n"
	    "  --log-file FILE         append the log to FILE instead of stderr\n"
	    "  --clock-scale F         intervals in minutes pass F times faster (default 1)\n"
	    "  --transition-delay MS   transitional states last at least MS (default 0)\n"
	    "  --max-body BYTES        largest JSON body of an /api request (default 1048576)\n"
	    "  --workers N             request worker threads (default 16)\n"
	    "  --cloud-like            behave as Daytona cloud where clients must cope: the\n"
	    "                          toolbox on its own port, create/start/stop answer\n"
	    "                          creating/starting/stopping, injected 429/503 answers\n"
	    "  --lifecycle-delay MS    creating, starting, stopping last at least MS in\n"
	    "                          cloud-like mode (default: the transition delay)\n"
	    "  --toolbox-port N        the toolbox's port in cloud-like mode (default 0: free)\n"
	    "  --fault-rate P          share of requests answered 429 or 503, 0 to 1 (default 0)\n"
	    "  --fault-seed N          seed of the fault draws (default: random, logged)\n"
	    "  --fault-source S        faults only for requests whose X-Daytona-Source is S\n"
	    "  --fault-retry-after S   Retry-After of an injected 429, in seconds (default 1)\n"
	    "  --help                  show this help and exit\n"
	    "  --version               show the version and exit\n"
	    "\n"
	    "The bound port, the API URL and the Bearer token are written to the files\n"
	    "port, url and token in the state directory (see doc/quaverd.md).\n");
}

/* A bad command line: say why, point at --help, exit 2. */
static void __attribute__((noreturn, format(printf, 1, 2))) bad_usage(const char *fmt, ...)
{
	va_list ap;

	fputs("quaverd: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\nTry 'quaverd --help'.\n", stderr);
	exit(2);
}

static void default_state_dir(char *out, size_t size)
{
	const char *xdg = getenv("XDG_DATA_HOME");
	const char *home = getenv("HOME");

	if (xdg && xdg[0] == '/') {
		if (snprintf(out, size, "%s/quaverd", xdg) >= (int)size)
			bad_usage("$XDG_DATA_HOME is too long; use --state-dir");
		return;
	}
	if (!home || !home[0]) {
		struct passwd *pw = getpwuid(getuid());

		home = pw ? pw->pw_dir : "/";
	}
	if (snprintf(out, size, "%s/.local/share/quaverd", home) >= (int)size)
		bad_usage("$HOME is too long; use --state-dir");
}

static int64_t int_option(const char *name, const char *text, int64_t min, int64_t max)
{
	int64_t value;

	if (parse_int64(text, min, max, &value) < 0)
		bad_usage("%s wants a whole number from %lld to %lld, not '%s'", name,
			  (long long)min, (long long)max, text);
	return value;
}

static void parse_options(int argc, char **argv, struct options *o)
{
	enum {
		OPT_STATE_DIR = 256,
		OPT_LISTEN,
		OPT_PORT,
		OPT_LOG_LEVEL,
		OPT_LOG_FILE,
		OPT_CLOCK_SCALE,
		OPT_TRANSITION_DELAY,
		OPT_MAX_BODY,
		OPT_WORKERS,
		OPT_CLOUD_LIKE,
		OPT_TOOLBOX_PORT,
		OPT_LIFECYCLE_DELAY,
		OPT_FAULT_RATE,
		OPT_FAULT_SEED,
		OPT_FAULT_SOURCE,
		OPT_FAULT_RETRY_AFTER,
		OPT_HELP,
		OPT_VERSION,
	};
	static const struct option longopts[] = {
	    {"state-dir", required_argument, NULL, OPT_STATE_DIR},
	    {"listen", required_argument, NULL, OPT_LISTEN},
	    {"port", required_argument, NULL, OPT_PORT},
	    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
	    {"log-file", required_argument, NULL, OPT_LOG_FILE},
	    {"clock-scale", required_argument, NULL, OPT_CLOCK_SCALE},
	    {"transition-delay", required_argument, NULL, OPT_TRANSITION_DELAY},
	    {"max-body", required_argument, NULL, OPT_MAX_BODY},
	    {"workers", required_argument, NULL, OPT_WORKERS},
	    {"cloud-like", no_argument, NULL, OPT_CLOUD_LIKE},
	    {"toolbox-port", required_argument, NULL, OPT_TOOLBOX_PORT},
	    {"lifecycle-delay", required_argument, NULL, OPT_LIFECYCLE_DELAY},
	    {"fault-rate", required_argument, NULL, OPT_FAULT_RATE},
	    {"fault-seed", required_argument, NULL, OPT_FAULT_SEED},
	    {"fault-source", required_argument, NULL, OPT_FAULT_SOURCE},
	    {"fault-retry-after", required_argument, NULL, OPT_FAULT_RETRY_AFTER},
	    {"help", no_argument, NULL, OPT_HELP},
	    {"version", no_argument, NULL, OPT_VERSION},
	    {NULL, 0, NULL, 0},
	};
	bool have_state_dir = false, have_cloud_option = false;
	int c;

	memset(o, 0, sizeof(*o));
	o->listen_addr = "127.0.0.1";
	o->log_level = LOG_LVL_INFO;
	o->clock_scale = 1.0;
	o->max_body = 1024 * 1024;
	o->workers = 16;
	o->fault_retry_after_s = 1;

	while ((c = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
		switch (c) {
		case OPT_STATE_DIR:
			if (!optarg[0] || !copy_str(o->state_dir, sizeof(o->state_dir), optarg))
				bad_usage("--state-dir wants a directory path");
			have_state_dir = true;
			break;
		case OPT_LISTEN: {
			unsigned char addr[sizeof(struct in6_addr)];

			if (inet_pton(AF_INET, optarg, addr) != 1 &&
			    inet_pton(AF_INET6, optarg, addr) != 1)
				bad_usage(
				    "--listen wants an IP address such as 127.0.0.1, not '%s'",
				    optarg);
			o->listen_addr = optarg;
			break;
		}
		case OPT_PORT:
			o->port = (int)int_option("--port", optarg, 0, 65535);
			break;
		case OPT_LOG_LEVEL:
			if (log_parse_level(optarg, &o->log_level) < 0)
				bad_usage("--log-level wants error, warn, info or debug, not '%s'",
					  optarg);
			break;
		case OPT_LOG_FILE:
			if (!optarg[0])
				bad_usage("--log-file wants a file path");
			o->log_file = optarg;
			break;
		case OPT_CLOCK_SCALE: {
			char *end;

			errno = 0;
			o->clock_scale = strtod(optarg, &end);
			if (errno || end == optarg || *end || !isfinite(o->clock_scale) ||
			    o->clock_scale < 1 || o->clock_scale > 1e6)
				bad_usage(
				    "--clock-scale wants a number from 1 to 1000000, not '%s'",
				    optarg);
			break;
		}
		case OPT_TRANSITION_DELAY:
			o->transition_delay_ms =
			    (int)int_option("--transition-delay", optarg, 0, 3600 * 1000);
			o->have_transition_delay = true;
			break;
		case OPT_MAX_BODY:
			o->max_body =
			    (uint64_t)int_option("--max-body", optarg, 1, (int64_t)MAX_BODY_LIMIT);
			break;
		case OPT_WORKERS:
			o->workers = (int)int_option("--workers", optarg, 1, 1024);
			break;
		case OPT_CLOUD_LIKE:
			o->cloud_like = true;
			break;
		case OPT_TOOLBOX_PORT:
			o->toolbox_port = (int)int_option("--toolbox-port", optarg, 0, 65535);
			have_cloud_option = true;
			break;
		case OPT_LIFECYCLE_DELAY:
			o->lifecycle_delay_ms =
			    (int)int_option("--lifecycle-delay", optarg, 0, 3600 * 1000);
			o->have_lifecycle_delay = true;
			have_cloud_option = true;
			break;
		case OPT_FAULT_RATE: {
			char *end;

			errno = 0;
			o->fault_rate = strtod(optarg, &end);
			if (errno || end == optarg || *end || !isfinite(o->fault_rate) ||
			    o->fault_rate < 0 || o->fault_rate > 1)
				bad_usage("--fault-rate wants a number from 0 to 1, not '%s'",
					  optarg);
			have_cloud_option = true;
			break;
		}
		case OPT_FAULT_SEED:
			o->fault_seed = (uint64_t)int_option("--fault-seed", optarg, 0, INT64_MAX);
			o->have_fault_seed = true;
			have_cloud_option = true;
			break;
		case OPT_FAULT_SOURCE:
			if (!optarg[0])
				bad_usage("--fault-source wants an X-Daytona-Source value");
			o->fault_source = optarg;
			have_cloud_option = true;
			break;
		case OPT_FAULT_RETRY_AFTER:
			o->fault_retry_after_s =
			    (int)int_option("--fault-retry-after", optarg, 0, 3600);
			have_cloud_option = true;
			break;
		case OPT_HELP:
			usage(stdout);
			exit(0);
		case OPT_VERSION:
			printf("quaverd %s\n", QUAVER_VERSION);
			exit(0);
		case ':':
			bad_usage("option '%s' needs a value", argv[optind - 1]);
		default:
			bad_usage("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		bad_usage("unexpected argument '%s'", argv[optind]);
	if (have_cloud_option && !o->cloud_like)
		bad_usage("--toolbox-port, --lifecycle-delay and the --fault-* options need "
			  "--cloud-like");
	if (o->cloud_like && !o->have_transition_delay)
		o->transition_delay_ms = CLOUD_LIKE_DEFAULT_DELAY_MS;
	if (!o->have_lifecycle_delay)
		o->lifecycle_delay_ms = o->transition_delay_ms;
	if (!have_state_dir)
		default_state_dir(o->state_dir, sizeof(o->state_dir));
}

static bool log_to_file;

/* Fatal start-up problem: one line on stderr (and in the log file), exit 1. */
static void __attribute__((noreturn, format(printf, 1, 2))) die(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "quaverd: %s\n", msg);
	if (log_to_file)
		log_error("%s", msg);
	exit(1);
}

/* DIR/NAME into @out, or exit: a state dir path that long is not usable. */
static void join_path(char *out, size_t size, const char *dir, const char *name)
{
	if (snprintf(out, size, "%s/%s", dir, name) >= (int)size)
		die("the state directory path %s is too long", dir);
}

/* Creates the state dir 0700 and refuses one that others can reach. */
static void prepare_state_dir(struct options *o)
{
	char real[PATH_MAX];
	struct stat st;
	int rc;

	rc = mkdir_p(o->state_dir, 0700);
	if (rc < 0)
		die("cannot create the state directory %s: %s", o->state_dir, strerror(-rc));
	if (!realpath(o->state_dir, real))
		die("cannot resolve the state directory %s: %s", o->state_dir, strerror(errno));
	copy_str(o->state_dir, sizeof(o->state_dir), real);
	if (stat(o->state_dir, &st) < 0)
		die("cannot read the state directory %s: %s", o->state_dir, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		die("the state directory %s is not a directory", o->state_dir);
	if (st.st_uid != geteuid())
		die("the state directory %s belongs to another user (uid %u)", o->state_dir,
		    (unsigned)st.st_uid);
	if (st.st_mode & 077)
		die("the state directory %s is accessible by group or others (mode %03o); "
		    "it holds the API token: chmod 700 it",
		    o->state_dir, (unsigned)(st.st_mode & 0777));
}

/* Holds the lock file for the life of the process; a second quaverd exits 1. */
static int lock_state_dir(const char *dir)
{
	char path[PATH_MAX];
	int fd;

	join_path(path, sizeof(path), dir, "lock");
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		die("cannot open %s: %s", path, strerror(errno));
	/*
	 * A child a killed quaverd forked shares this lock until it execs or
	 * exits (a few ms): give such leftovers 2 s before calling the state
	 * dir taken by a running quaverd.
	 */
	for (int tries = 0; flock(fd, LOCK_EX | LOCK_NB) < 0; tries++) {
		if (errno != EWOULDBLOCK)
			die("cannot lock %s: %s", path, strerror(errno));
		if (tries == 20)
			die("quaverd already running for %s", dir);
		usleep(100 * 1000);
	}
	return fd;
}

static bool is_hex(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

/*
 * The small files quaverd keeps (token, organization): read one, or make it
 * once with @make. Refuses a file that is not a regular 0600 file.
 */
static void load_or_make(const char *dir, const char *name, char *out, size_t want,
			 bool (*valid)(const char *, size_t), void (*make)(char *))
{
	char path[PATH_MAX];
	struct buf text = BUF_INIT;
	struct stat st;
	int rc;

	join_path(path, sizeof(path), dir, name);
	if (lstat(path, &st) < 0) {
		if (errno != ENOENT)
			die("cannot read %s: %s", path, strerror(errno));
		make(out);
		rc = write_file_atomic(path, out, want, 0600);
		if (rc < 0)
			die("cannot write %s: %s", path, strerror(-rc));
		return;
	}
	if (!S_ISREG(st.st_mode))
		die("%s is not a regular file", path);
	if ((st.st_mode & 0777) != 0600)
		die("%s has mode %03o; it must be 0600", path, (unsigned)(st.st_mode & 0777));
	rc = read_file(path, &text, 4096);
	if (rc < 0)
		die("cannot read %s: %s", path, strerror(-rc));
	while (text.len && (text.data[text.len - 1] == '\n' || text.data[text.len - 1] == '\r'))
		text.data[--text.len] = '\0';
	if (text.len != want || !valid(buf_str(&text), text.len))
		die("%s is damaged (remove it to make a new one)", path);
	memcpy(out, text.data, want);
	out[want] = '\0';
	buf_free(&text);
}

static bool token_valid(const char *s, size_t len)
{
	return len == TOKEN_HEX_LEN && is_hex(s, len);
}

static void token_make(char *out)
{
	random_hex(out, TOKEN_HEX_LEN / 2);
}

static bool uuid_valid(const char *s, size_t len)
{
	if (len != 36)
		return false;
	for (size_t i = 0; i < len; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;

		if (dash ? s[i] != '-' : !is_hex(s + i, 1))
			return false;
	}
	return true;
}

static void uuid_make(char *out)
{
	uuid4(out);
}

static void write_small_file(const char *dir, const char *name, const char *text)
{
	char path[PATH_MAX];
	int rc;

	join_path(path, sizeof(path), dir, name);
	rc = write_file_atomic(path, text, strlen(text), 0600);
	if (rc < 0)
		die("cannot write %s: %s", path, strerror(-rc));
}

/* How clients reach us: the bound address, or loopback for a wildcard one. */
static void public_base(const char *listen_addr, int port, char *out, size_t size)
{
	if (!strcmp(listen_addr, "0.0.0.0") || !strcmp(listen_addr, "::") ||
	    !strcmp(listen_addr, "127.0.0.1"))
		snprintf(out, size, "http://127.0.0.1:%d", port);
	else if (strchr(listen_addr, ':'))
		snprintf(out, size, "http://[%s]:%d", listen_addr, port);
	else
		snprintf(out, size, "http://%s:%d", listen_addr, port);
}

/*
 * Cloud-like mode: the wrappers, and the toolbox's own server, started
 * before the API's so that no DTO ever names a toolbox that is not there.
 */
static struct cloudlike *start_cloud_like(const struct options *o, struct api *api,
					  struct events *events,
					  const struct http_server_config *api_cfg,
					  struct http_server **toolbox_server)
{
	struct cloudlike_config cfg = {
	    .fault_rate = o->fault_rate,
	    .fault_seed = o->fault_seed,
	    .fault_source = o->fault_source,
	    .retry_after_s = o->fault_retry_after_s,
	    .inner = api_cfg->ops,
	    .inner_ctx = api_cfg->ctx,
	    .ws_inner = api_cfg->ws_ops,
	    .ws_ctx = api_cfg->ws_ctx,
	};
	struct http_server_config tb_cfg = *api_cfg;
	struct cloudlike *cloud;
	char base[128], text[160];
	int rc;

	if (!o->have_fault_seed)
		random_bytes(&cfg.fault_seed, sizeof(cfg.fault_seed));
	cloud = cloudlike_new(&cfg);
	if (!cloud)
		die("cannot set up the cloud-like mode: out of memory");
	tb_cfg.port = o->toolbox_port;
	tb_cfg.ops = cloudlike_http_ops();
	tb_cfg.ctx = cloudlike_ctx(cloud, CLOUDLIKE_TOOLBOX);
	tb_cfg.ws_ops = cloudlike_ws_ops();
	tb_cfg.ws_ctx = cloudlike_ctx(cloud, CLOUDLIKE_TOOLBOX);
	*toolbox_server = http_server_start(&tb_cfg, &rc);
	if (!*toolbox_server)
		die("cannot listen on %s port %d for the toolbox: %s", o->listen_addr,
		    o->toolbox_port, strerror(-rc));
	public_base(o->listen_addr, http_server_port(*toolbox_server), base, sizeof(base));
	api_set_toolbox_base(api, base);
	/* The events' DTOs carry the same toolboxProxyUrl (events.c adds "/toolbox"). */
	events_set_public_base(events, base);
	snprintf(text, sizeof(text), "%s/toolbox\n", base);
	write_small_file(o->state_dir, "toolbox_url", text);
	log_info("cloud-like mode: toolbox at %s/toolbox; creating, starting, stopping last %d ms, "
		 "other transitional states %d ms; fault rate %g (seed %llu%s%s), Retry-After %d s",
		 base, o->lifecycle_delay_ms, o->transition_delay_ms, o->fault_rate, (unsigned long long)cfg.fault_seed,
		 o->fault_source ? ", only for X-Daytona-Source " : "",
		 o->fault_source ? o->fault_source : "", o->fault_retry_after_s);
	return cloud;
}

int main(int argc, char **argv)
{
	char token[TOKEN_HEX_LEN + 1], organization[37], spool_dir[PATH_MAX];
	char base[128], text[160];
	struct store_config store_cfg;
	struct api_config api_cfg;
	struct http_server_config http_cfg;
	struct http_server *server, *toolbox_server = NULL;
	struct cloudlike *cloud = NULL;
	struct store *store;
	struct options o;
	struct api *api;
	struct runtime *runtime;
	struct events *events;
	sigset_t stop_signals;
	int lock_fd, rc, sig;

	/* It holds the token: no core dumps, no ptrace by other processes of the user. */
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	/*
	 * Block the stop signals before any thread exists, so every thread
	 * inherits the mask and main's sigwait receives them.
	 */
	sigemptyset(&stop_signals);
	sigaddset(&stop_signals, SIGTERM);
	sigaddset(&stop_signals, SIGINT);
	pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
	signal(SIGPIPE, SIG_IGN);

	parse_options(argc, argv, &o);
	log_to_file = o.log_file != NULL;
	rc =
	    log_init("quaverd", o.log_level, log_to_file ? LOG_TO_FILE : LOG_TO_STDERR, o.log_file);
	if (rc < 0) {
		fprintf(stderr, "quaverd: cannot open the log file %s: %s\n", o.log_file,
			strerror(-rc));
		return 1;
	}

	prepare_state_dir(&o);
	lock_fd = lock_state_dir(o.state_dir);
	load_or_make(o.state_dir, "token", token, TOKEN_HEX_LEN, token_valid, token_make);
	load_or_make(o.state_dir, "organization", organization, 36, uuid_valid, uuid_make);
	join_path(spool_dir, sizeof(spool_dir), o.state_dir, "tmp");
	rc = mkdir_p(spool_dir, 0700);
	if (rc < 0)
		die("cannot create %s: %s", spool_dir, strerror(-rc));

	store_cfg = (struct store_config){
	    .state_dir = o.state_dir,
	    .organization_id = organization,
	    .clock_scale = o.clock_scale,
	    .transition_delay_ms = o.transition_delay_ms,
	    .lasting_lifecycle = o.cloud_like,
	    .lifecycle_delay_ms = o.lifecycle_delay_ms,
	};
	store = store_open(&store_cfg, &rc);
	if (!store)
		die("cannot open the store in %s: %s", o.state_dir, strerror(-rc));
	/* Without bubblewrap quaverd still serves files; sandboxes run no processes (logged). */
	runtime = runtime_new(store, o.state_dir, &rc);
	api_cfg = (struct api_config){.token = token, .max_json_body = o.max_body};
	api = api_new(store, &api_cfg);
	if (!api)
		die("cannot set up the API: out of memory");
	events = events_new(store, token);
	if (!events)
		die("cannot set up the websocket routes: out of memory");

	http_cfg = (struct http_server_config){
	    .listen_addr = o.listen_addr,
	    .port = o.port,
	    .workers = o.workers,
	    .spool_dir = spool_dir,
	    .ops = api_http_ops(),
	    .ctx = api,
	    .ws_ops = events_ws_ops(),
	    .ws_ctx = events,
	};
	if (o.cloud_like) {
		cloud = start_cloud_like(&o, api, events, &http_cfg, &toolbox_server);
		http_cfg.ops = cloudlike_http_ops();
		http_cfg.ctx = cloudlike_ctx(cloud, CLOUDLIKE_API);
		http_cfg.ws_ops = cloudlike_ws_ops();
		http_cfg.ws_ctx = cloudlike_ctx(cloud, CLOUDLIKE_API);
	}
	server = http_server_start(&http_cfg, &rc);
	if (!server)
		die("cannot listen on %s port %d: %s", o.listen_addr, o.port, strerror(-rc));
	public_base(o.listen_addr, http_server_port(server), base, sizeof(base));
	api_set_public_base(api, base);
	if (!o.cloud_like) {
		char stale[PATH_MAX];

		events_set_public_base(events, base);
		/* A cloud-like run's toolbox_url would name a port nobody serves. */
		join_path(stale, sizeof(stale), o.state_dir, "toolbox_url");
		unlink(stale);
	}

	snprintf(text, sizeof(text), "%d\n", http_server_port(server));
	write_small_file(o.state_dir, "port", text);
	snprintf(text, sizeof(text), "%s/api\n", base);
	write_small_file(o.state_dir, "url", text);
	log_info("quaverd %s listening on %s/api (state dir %s)", QUAVER_VERSION, base,
		 o.state_dir);

	do {
		rc = sigwait(&stop_signals, &sig);
	} while (rc == EINTR);
	log_info("stopping on %s", sig == SIGINT ? "SIGINT" : "SIGTERM");

	events_stop(events);
	runtime_shutdown(runtime);
	http_server_stop(server);
	if (toolbox_server)
		http_server_stop(toolbox_server);
	cloudlike_free(cloud);
	api_free(api);
	store_close(store);
	runtime_free(runtime);
	events_free(events);
	log_info("stopped");
	log_close();
	close(lock_fd);
	return 0;
}
