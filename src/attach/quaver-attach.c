/*
 * quaver-attach: an interactive terminal on a sandbox, through a quaverfs
 * mount (fs-layout.md, Terminals).
 *
 *   quaver-attach MOUNT/sandboxes/NAME            a new shell, ended at exit
 *   quaver-attach MOUNT/sandboxes/NAME/terminals/T  attach to terminal T
 *
 * With a sandbox directory it opens the sandbox's `pty` node, which starts
 * a login shell for this process alone (terminals/pty-PID while it runs);
 * the shell is killed when we close it, whatever way we end. With a
 * terminal directory it uses T/data, T/size and T/exit, and the terminal
 * goes on after we leave (Ctrl-] detaches).
 *
 * The local terminal is put in raw mode and its size is written to the
 * size node at start and on every SIGWINCH. Our exit status is the shell's
 * exit code (1 when it is unknown). The terminal's settings are restored on
 * every way out: the end of the shell, an error, SIGTERM, SIGHUP, SIGQUIT,
 * SIGINT and SIGPIPE (and at exit()).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#define DETACH_KEY 0x1d /* Ctrl-] */

static struct termios saved;
static bool raw_on;
static int signal_pipe[2] = {-1, -1};

static void restore_terminal(void)
{
	if (raw_on) {
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
		raw_on = false;
	}
}

static void on_signal(int sig)
{
	int saved_errno = errno;
	unsigned char s = (unsigned char)sig;

	/* the loop restores the terminal and leaves; a pipe full means it knows already */
	if (write(signal_pipe[1], &s, 1) < 0)
		(void)0;
	errno = saved_errno;
}

static int set_raw(void)
{
	struct termios raw;

	if (!isatty(STDIN_FILENO))
		return 0;
	if (tcgetattr(STDIN_FILENO, &saved) < 0)
		return -1;
	raw = saved;
	cfmakeraw(&raw);
	if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &raw) < 0)
		return -1;
	raw_on = true;
	return 0;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Writes the local window size to @size_path ("cols rows"); quiet when unknown. */
static void send_size(const char *size_path)
{
	struct winsize ws;
	char line[32];
	int fd, n;

	if (ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) < 0 || !ws.ws_col || !ws.ws_row)
		return;
	n = snprintf(line, sizeof(line), "%u %u\n", ws.ws_col, ws.ws_row);
	fd = open(size_path, O_WRONLY | O_TRUNC | O_CLOEXEC);
	if (fd < 0)
		return;
	if (write_all(fd, line, (size_t)n) < 0)
		(void)0; /* a resize refused (the shell ended) is not worth a message */
	close(fd);
}

/* The exit code in @exit_path (blocks until the shell has ended); -1 when unknown. */
static int read_exit(const char *exit_path)
{
	char text[32];
	ssize_t n;
	int fd = open(exit_path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	do
		n = read(fd, text, sizeof(text) - 1);
	while (n < 0 && errno == EINTR);
	close(fd);
	if (n <= 0)
		return -1;
	text[n] = '\0';
	return atoi(text);
}

static bool is_dir(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: quaver-attach MOUNT/sandboxes/NAME\n"
		   "       quaver-attach MOUNT/sandboxes/NAME/terminals/T\n"
		   "An interactive shell in a sandbox through a quaverfs mount; exits with the\n"
		   "shell's exit code. In a terminal directory, Ctrl-] detaches.\n");
}

int main(int argc, char **argv)
{
	char data_path[PATH_MAX], size_path[PATH_MAX], exit_path[PATH_MAX], probe[PATH_MAX];
	const char *dir;
	bool own_shell, detached = false, input_open = true;
	int data_fd, code = 1, quit_signal = 0;
	struct sigaction sa;

	if (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
		usage(stdout);
		return 0;
	}
	if (argc != 2 || !is_dir(argv[1])) {
		usage(stderr);
		return 2;
	}
	dir = argv[1];
	snprintf(probe, sizeof(probe), "%s/data", dir);
	own_shell = access(probe, F_OK) != 0;
	if (own_shell) {
		snprintf(data_path, sizeof(data_path), "%s/pty", dir);
		/* the pty node names this process's terminal after its thread id: our pid */
		snprintf(size_path, sizeof(size_path), "%s/terminals/pty-%d/size", dir,
			 (int)getpid());
		snprintf(exit_path, sizeof(exit_path), "%s/terminals/pty-%d/exit", dir,
			 (int)getpid());
	} else {
		snprintf(data_path, sizeof(data_path), "%s/data", dir);
		snprintf(size_path, sizeof(size_path), "%s/size", dir);
		snprintf(exit_path, sizeof(exit_path), "%s/exit", dir);
	}

	if (pipe2(signal_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
		perror("quaver-attach: pipe");
		return 1;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGWINCH, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGQUIT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	data_fd = open(data_path, O_RDWR | O_CLOEXEC);
	if (data_fd < 0) {
		fprintf(stderr, "quaver-attach: %s: %s\n", data_path, strerror(errno));
		return 1;
	}
	send_size(size_path);
	atexit(restore_terminal);
	if (set_raw() < 0) {
		fprintf(stderr, "quaver-attach: cannot set the terminal to raw mode: %s\n",
			strerror(errno));
		close(data_fd);
		return 1;
	}

	for (;;) {
		struct pollfd fds[3] = {
		    {.fd = data_fd, .events = POLLIN},
		    {.fd = signal_pipe[0], .events = POLLIN},
		    {.fd = input_open ? STDIN_FILENO : -1, .events = POLLIN},
		};
		char buf[65536];
		ssize_t n;

		if (poll(fds, 3, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (fds[1].revents & POLLIN) {
			unsigned char s;

			while (read(signal_pipe[0], &s, 1) == 1) {
				if (s == SIGWINCH)
					send_size(size_path);
				else
					quit_signal = s;
			}
			if (quit_signal)
				break;
		}
		if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			n = read(data_fd, buf, sizeof(buf));
			if (n < 0 && (errno == EINTR || errno == EAGAIN))
				continue;
			if (n <= 0) /* EOF: the shell has ended; EIO: the terminal is lost */
				break;
			if (write_all(STDOUT_FILENO, buf, (size_t)n) < 0)
				break;
		}
		if (fds[2].revents & (POLLIN | POLLHUP)) {
			n = read(STDIN_FILENO, buf, sizeof(buf));
			if (n < 0 && (errno == EINTR || errno == EAGAIN))
				continue;
			if (n <= 0) {
				/* input piped in and all sent: the shell's output goes on to its
				 * end */
				input_open = false;
				continue;
			}
			if (!own_shell && memchr(buf, DETACH_KEY, (size_t)n)) {
				detached = true;
				break;
			}
			if (write_all(data_fd, buf, (size_t)n) < 0)
				break;
		}
	}

	restore_terminal();
	if (quit_signal) {
		close(data_fd);
		signal((int)quit_signal, SIG_DFL);
		raise(quit_signal);
		return 128 + quit_signal;
	}
	if (detached) {
		close(data_fd);
		fprintf(stderr, "\r\nquaver-attach: detached; the terminal goes on\n");
		return 0;
	}
	/* the exit node must be read while our pty handle (which owns the terminal) is open */
	code = read_exit(exit_path);
	close(data_fd);
	if (code < 0) {
		fprintf(stderr, "\r\nquaver-attach: the connection to the terminal was lost\n");
		return 1;
	}
	return code & 0xff;
}
